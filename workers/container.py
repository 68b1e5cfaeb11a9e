"""What workers need from the composition root (bootstrap.Container provides it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.bus.base import Bus
from adapters.embeddings.base import EmbeddingProvider
from adapters.storage.base import Storage
from adapters.vector.base import VectorStore
from commands.registry import CommandHandlers
from config import Settings
from events.registry import EventTypes
from events.routing import Routing
from events.store import EventStore
from projections.registry import Projection

if TYPE_CHECKING:
    from workers.runtime import Processor


class WorkerContainer(Protocol):
    settings: Settings
    engine: AsyncEngine
    store: EventStore
    bus: Bus
    redis: aioredis.Redis
    storage: Storage
    embeddings: EmbeddingProvider
    vectors: VectorStore  # VECTOR_STORE: high_quality datasets
    keywords: VectorStore  # Postgres full text: economy datasets
    event_types: EventTypes
    handlers: CommandHandlers
    projections: Mapping[str, Projection]
    routing: Routing
    # role name -> processor factory, contributed by the contexts' manifests
    processors: Mapping[str, Callable[[WorkerContainer], Processor]]

    def redis_key(self, name: str) -> str: ...


ProcessorFactory = Callable[[WorkerContainer], "Processor"]
