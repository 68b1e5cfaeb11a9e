"""What workers need from the composition root (bootstrap.Container provides it). Processor
factories and jobs name the members they use (`workers/declarations.py`); `provide` passes
them exactly those."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.bus.base import Bus
from adapters.embeddings.models import EmbeddingModels
from adapters.kv.base import KeyValueStore
from adapters.mail.base import Mailer
from adapters.storage.base import Storage
from adapters.vector.base import VectorStore
from commands.registry import CommandHandlers
from config import Settings
from events.listener import Notifications
from events.registry import EventTypes
from events.routing import Routing
from events.store import EventStore
from projections.registry import Projection
from projections.versions import ReadModels
from workers.declarations import Job, WorkTopic, dependencies_of


class WorkerContainer(Protocol):
    """Read-only views, so a container may hold narrower types (e.g. PgVectorStore)."""

    @property
    def settings(self) -> Settings: ...

    # reads and writes of the active read-model version (and the public bookkeeping tables)
    @property
    def engine(self) -> AsyncEngine: ...
    # every version of every projection: which is active, an engine per version
    @property
    def read_models(self) -> ReadModels: ...

    @property
    def store(self) -> EventStore: ...

    @property
    def bus(self) -> Bus: ...

    # short-lived operational state and task streams (Redis in production)
    @property
    def kv(self) -> KeyValueStore: ...

    @property
    def storage(self) -> Storage: ...

    # the embedding models datasets may name (`embedding_model_provider`, `embedding_model`)
    @property
    def embedding_models(self) -> EmbeddingModels: ...

    # VECTOR_STORE: high_quality datasets
    @property
    def vectors(self) -> VectorStore: ...

    # Postgres full text: economy datasets
    @property
    def keywords(self) -> VectorStore: ...

    # MAIL_TYPE: where mails go (an SMTP server, or the outbox folder)
    @property
    def mailer(self) -> Mailer: ...

    # LISTEN for notices (None: not listening; nothing may be cached then)
    @property
    def notifications(self) -> Notifications | None: ...

    @property
    def event_types(self) -> EventTypes: ...

    @property
    def handlers(self) -> CommandHandlers: ...

    @property
    def projections(self) -> Mapping[str, Projection]: ...

    @property
    def routing(self) -> Routing: ...

    # worker role (`<context>.<role>`) -> the work topic its processor consumes
    @property
    def work(self) -> Mapping[str, WorkTopic]: ...

    # job name -> the job, the backbone's and the contexts'
    @property
    def jobs(self) -> Mapping[str, Job]: ...


# What a processor factory or a job may ask for: the members of a worker container.
PROVIDED: frozenset[str] = frozenset(n for n in vars(WorkerContainer) if not n.startswith("_"))
T = TypeVar("T")


def provide(c: WorkerContainer, factory: Callable[..., T], *args: object) -> T:
    """Calls `factory` with `args` and the dependencies it declares, taken from `c`."""
    return factory(*args, **{name: getattr(c, name) for name in dependencies_of(factory)})
