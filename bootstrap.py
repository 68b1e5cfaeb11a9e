"""The composition root: builds every dependency once, from settings, for any role, and
the registries of all bounded contexts from their manifests (`contexts/`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from adapters import outside
from adapters.bus.base import Bus, TopicSpec
from adapters.embeddings.base import EmbeddingProvider
from adapters.embeddings.models import LOCAL_PROVIDER, EmbeddingModels, WorkspaceModels
from adapters.kv.base import KeyValueStore
from adapters.kv.redis import RedisKeyValueStore
from adapters.mail.base import Mailer
from adapters.redis_client import redis_client
from adapters.storage.base import Storage
from adapters.vector.base import VectorStore
from adapters.vector.pgvector import PgVectorStore
from commands.registry import CommandHandlers
from config import ConfigError, EventBusKind, Settings
from contexts import CONTEXTS
from contexts.manifest import Assembly, ContextManifest, assemble
from events.listener import Notifications
from events.postgres_store import PostgresEventStore
from events.registry import EventTypes
from events.routing import Routing
from events.store import OUTCOME_CHANNEL, EventStore
from projections.platform.models import WorkspaceEmbeddingModels
from projections.registry import Projection
from projections.runner import PROJECTION_CHANNEL
from projections.tables import VERSIONS_CHANNEL
from projections.versions import ReadModels
from workers.declarations import Job, WorkTopic

ASSEMBLY: Assembly = assemble(CONTEXTS)


@dataclass
class Container:
    """Satisfies gateway.container.GatewayContainer and workers.container.WorkerContainer."""

    settings: Settings
    read_models: ReadModels
    store: EventStore
    bus: Bus
    kv: KeyValueStore  # short-lived operational state and task streams (Redis)
    storage: Storage
    embedding_models: EmbeddingModels
    vectors: VectorStore  # VECTOR_STORE: high_quality datasets
    keywords: VectorStore  # Postgres full text: economy datasets
    mailer: Mailer  # MAIL_TYPE: the outbox folder or an SMTP server
    assembly: Assembly = ASSEMBLY
    # what closes the parts `build` made (the parts a caller gave are the caller's)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    notifications: Notifications | None = None
    following: asyncio.Task[None] | None = None  # ReadModels.follow
    stop_following: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def engine(self) -> AsyncEngine:
        """Reads (and bookkeeping) on the active read-model version, as last heard."""
        return self.read_models.engine

    @property
    def contexts(self) -> Sequence[ContextManifest]:
        return self.assembly.contexts

    @property
    def event_types(self) -> EventTypes:
        return self.assembly.event_types

    @property
    def handlers(self) -> CommandHandlers:
        return self.assembly.handlers

    @property
    def projections(self) -> Mapping[str, Projection]:
        return self.assembly.projections

    @property
    def routing(self) -> Routing:
        return self.assembly.routing

    @property
    def work(self) -> Mapping[str, WorkTopic]:
        return self.assembly.work

    @property
    def jobs(self) -> Mapping[str, Job]:
        return self.assembly.jobs

    async def close(self) -> None:
        self.stop_following.set()
        if self.following is not None:
            self.following.cancel()
        if self.notifications is not None:
            await self.notifications.stop()
        await self.bus.stop()
        for closing in self.closers:
            await closing()
        await self.kv.close()
        await self.read_models.database.dispose()
        self.store.close()


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic with the partition count the configuration asks for."""
    return ASSEMBLY.topics(settings.COMMAND_PARTITIONS, settings.EVENT_PARTITIONS,
                           settings.topic_partitions)


class TopicsTooSmall(ConfigError):
    """A topic has fewer partitions than configured: `eddy topics ensure` grows it."""


async def check_topics(bus: Bus, specs: Sequence[TopicSpec]) -> None:
    """Create missing topics; refuse to start on one with fewer partitions than configured
    (more members than partitions would idle, and keys would map to missing partitions)."""
    await bus.ensure_topics(specs)
    counts = await bus.topic_partitions([s.name for s in specs])
    short = [f"{s.name} has {counts.get(s.name, 0)}, configured {s.partitions}"
             for s in specs if counts.get(s.name, 0) < s.partitions]
    if short:
        raise TopicsTooSmall(f"topics with fewer partitions than configured ({'; '.join(short)})"
                             ": run `eddy topics ensure` to grow them, then restart")


def build_bus(settings: Settings) -> Bus:
    if settings.bus is EventBusKind.KAFKA:
        from adapters.bus.kafka import KafkaBus

        assert settings.KAFKA_BOOTSTRAP_SERVERS
        return KafkaBus(settings.KAFKA_BOOTSTRAP_SERVERS, prefix=settings.EVENT_TOPIC_PREFIX,
                        session_timeout_ms=settings.KAFKA_SESSION_TIMEOUT_MS,
                        max_poll_interval_ms=int(
                            settings.CONSUMER_MAX_POLL_INTERVAL_SECONDS * 1000))
    from adapters.bus.redis_streams import RedisStreamsBus

    return RedisStreamsBus(settings.redis_url(), prefix=settings.EVENT_TOPIC_PREFIX,
                           lease_seconds=settings.REDIS_BUS_LEASE_SECONDS,
                           max_poll_interval=settings.CONSUMER_MAX_POLL_INTERVAL_SECONDS,
                           max_connections=settings.redis_max_connections)


def build_engine(settings: Settings) -> AsyncEngine:
    """The database, with no read-model version mapped: `ReadModels` maps versions."""
    return create_async_engine(
        settings.database_dsn().replace("postgresql://", "postgresql+asyncpg://", 1),
        # No pre-ping (a round trip per checkout): a connection a restart broke fails once, as
        # a transient error (503 / retried), and SQLAlchemy then recycles the whole pool.
        pool_size=settings.SQLALCHEMY_POOL_SIZE, max_overflow=10,
    )


def outside_limits(settings: Settings) -> outside.OutsideCallLimits:
    return outside.OutsideCallLimits(
        connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
        read_timeout=settings.PROVIDER_READ_TIMEOUT,
        deadline=settings.PROVIDER_REQUEST_DEADLINE, max_retries=settings.PROVIDER_MAX_RETRIES)


def build_storage(settings: Settings) -> Storage:
    if settings.STORAGE_TYPE == "s3":
        from adapters.storage.s3 import S3Storage

        return S3Storage(bucket=settings.S3_BUCKET_NAME, endpoint_url=settings.S3_ENDPOINT,
                         access_key=settings.S3_ACCESS_KEY, secret_key=settings.S3_SECRET_KEY,
                         region=settings.S3_REGION, address_style=settings.S3_ADDRESS_STYLE)
    from adapters.storage.local import LocalStorage

    return LocalStorage(settings.OPENDAL_FS_ROOT or settings.EDDY_DATA_DIR / "storage")


def build_mailer(settings: Settings) -> Mailer:
    if settings.MAIL_TYPE == "smtp":
        from adapters.mail.smtp import SmtpMailer, SmtpSettings

        return SmtpMailer(SmtpSettings(
            server=settings.SMTP_SERVER, port=settings.SMTP_PORT,
            username=settings.SMTP_USERNAME, password=settings.SMTP_PASSWORD,
            use_tls=settings.SMTP_USE_TLS, opportunistic_tls=settings.SMTP_OPPORTUNISTIC_TLS,
            sender=settings.MAIL_DEFAULT_SEND_FROM))
    from adapters.mail.outbox import OutboxMailer

    return OutboxMailer(settings.outbox_dir(), settings.MAIL_DEFAULT_SEND_FROM)


def build_embedding_models(settings: Settings,
                           workspace: WorkspaceModels | None = None) -> EmbeddingModels:
    """The local models (always offered: they ship in Python packages) and the configured
    OpenAI-compatible one; the default is EMBEDDING_PROVIDER's model. With `workspace`,
    datasets may also name a model their workspace connected (its model providers)."""
    from adapters.embeddings.local_minilm import LocalMiniLM
    from adapters.embeddings.local_use import LocalUSE

    factories: dict[tuple[str, str], Callable[[], EmbeddingProvider]] = {
        (LOCAL_PROVIDER, LocalMiniLM.MODEL_NAME): LocalMiniLM,
        (LOCAL_PROVIDER, LocalUSE.MODEL_NAME): LocalUSE,
    }
    default = (LOCAL_PROVIDER, settings.EMBEDDING_LOCAL_MODEL)
    if settings.EMBEDDING_PROVIDER == "openai_compatible":
        from adapters.embeddings.openai_compatible import OpenAICompatibleEmbeddings

        base_url = settings.EMBEDDING_API_BASE
        assert base_url
        default = (settings.EMBEDDING_PROVIDER, settings.EMBEDDING_MODEL)
        factories[default] = lambda: OpenAICompatibleEmbeddings(
            base_url=base_url, api_key=settings.EMBEDDING_API_KEY,
            model=settings.EMBEDDING_MODEL, dimensions=settings.EMBEDDING_DIMENSIONS)
    return EmbeddingModels(factories, default, workspace)


def build_vectors(settings: Settings, keywords: PgVectorStore) -> VectorStore:
    if settings.VECTOR_STORE == "weaviate":
        from adapters.vector.weaviate import WeaviateStore

        assert settings.WEAVIATE_ENDPOINT
        return WeaviateStore(settings.WEAVIATE_ENDPOINT, settings.WEAVIATE_API_KEY)
    return keywords  # pgvector: the same Postgres tables serve vectors and full text


def _needs(settings: Settings, server: str) -> None:
    if not getattr(settings, f"{server}_HOST"):
        raise ConfigError(f"{server}_HOST is not set (embedded servers are started by `eddy "
                          "up`), and no part that replaces it was given")


ALL_CHANNELS = (OUTCOME_CHANNEL, PROJECTION_CHANNEL, VERSIONS_CHANNEL)
# A worker waits for no command outcome: it hears what evicts its read caches.
WORKER_CHANNELS = (PROJECTION_CHANNEL, VERSIONS_CHANNEL)


async def build(settings: Settings, *, listen: bool = False,
                channels: Sequence[str] = ALL_CHANNELS, store: EventStore | None = None,
                bus: Bus | None = None, vectors: VectorStore | None = None,
                keywords: VectorStore | None = None, kv: KeyValueStore | None = None,
                read_db: AsyncEngine | None = None, storage: Storage | None = None,
                notifications: Notifications | None = None) -> Container:
    """Every dependency, from settings; a part given is used instead (the unit tier gives
    in-memory ones: `memory_node`). `listen` starts Postgres LISTEN on `channels`, unless
    `notifications` are given (a node without Postgres publishes its own)."""
    outside.configure(outside_limits(settings))
    closers: list[Callable[[], Awaitable[None]]] = []
    if store is None:
        _needs(settings, "DB")
        store = PostgresEventStore(
            ASSEMBLY.event_types, host=settings.DB_HOST, port=settings.DB_PORT,
            user=settings.DB_USERNAME, password=settings.DB_PASSWORD,
            dbname=settings.DB_DATABASE)
    if bus is None:
        if settings.bus is EventBusKind.REDIS:
            _needs(settings, "REDIS")
        bus = build_bus(settings)
    await bus.start()
    try:
        await check_topics(bus, topic_specs(settings))
    except BaseException:
        await bus.stop()
        raise
    if keywords is None:
        _needs(settings, "DB")
        pg = keywords = PgVectorStore(settings.database_dsn())
        closers.append(pg.close)
    if vectors is None:
        vectors = build_vectors(settings, keywords)
        if vectors is not keywords:
            closers.append(vectors.close)  # type: ignore[attr-defined]
    if kv is None:
        _needs(settings, "REDIS")
        kv = RedisKeyValueStore(redis_client(settings.redis_url(),
                                             max_connections=settings.redis_max_connections),
                                prefix=settings.EVENT_TOPIC_PREFIX)
    if read_db is None:
        _needs(settings, "DB")
        read_db = build_engine(settings)
    read_models = ReadModels(read_db)
    await read_models.refresh()
    workspace_models = WorkspaceEmbeddingModels(lambda: read_models.engine, settings.SECRET_KEY)
    container = Container(
        settings=settings,
        read_models=read_models,
        store=store,
        bus=bus,
        kv=kv,
        storage=storage or build_storage(settings),
        embedding_models=build_embedding_models(settings, workspace_models),
        vectors=vectors,
        keywords=keywords,
        mailer=build_mailer(settings),
        closers=closers,
        notifications=notifications,
    )
    if listen and notifications is None:
        container.notifications = Notifications(
            settings.database_dsn(), list(channels))
        await container.notifications.start()
    # Every process follows switches between read-model versions without a restart.
    container.following = asyncio.get_running_loop().create_task(
        read_models.follow(container.stop_following, container.notifications))
    return container


@asynccontextmanager
async def in_process_node(settings: Settings, roles: Sequence[str] | None = None,
                          member: str | None = None) -> AsyncIterator[tuple[Container, FastAPI]]:
    """Gateway app and worker roles in this process (tests, benchmarks, `eddy` dev use)."""
    from gateway.app import create_app
    from workers.node import all_roles, start_roles

    container = await build(settings, listen=True)
    stop = asyncio.Event()
    roles = all_roles(container.work) if roles is None else roles
    tasks = start_roles(container, roles, stop, member)
    try:
        yield container, create_app(container)
    finally:
        stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()
        await container.close()


@asynccontextmanager
async def memory_node(settings: Settings, read_db: AsyncEngine,
                      storage: Storage | None = None) -> AsyncIterator[tuple[Container, FastAPI]]:
    """Gateway app and workers in this process without any server: memory event store, bus,
    vectors and key-value store, the read model in `read_db` (SQLite with the read-model and
    bookkeeping tables, its active versions registered); see workers/local.py."""
    from adapters.bus.memory import InMemoryBus
    from adapters.kv.memory import MemoryKeyValueStore
    from adapters.vector.memory import InMemoryVectorStore
    from events.memory_store import InMemoryEventStore
    from gateway.app import create_app
    from workers.local import announce_outcomes, start_local_roles

    store, vectors = InMemoryEventStore(), InMemoryVectorStore()
    notifications = Notifications(None, [])
    container = await build(settings, store=store, bus=InMemoryBus(), vectors=vectors,
                            keywords=vectors, kv=MemoryKeyValueStore(), read_db=read_db,
                            storage=storage, notifications=notifications)
    announce_outcomes(store, notifications)
    stop = asyncio.Event()
    tasks = start_local_roles(container, notifications, stop)
    try:
        yield container, create_app(container)
    finally:
        stop.set()
        for task in tasks:  # nothing outlives the process here: no need to finish work
            task.cancel()
        await asyncio.wait(tasks)
        await container.close()
