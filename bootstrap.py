"""The composition root: builds every dependency once, from settings, for any role."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from adapters.bus.base import Bus
from config import EventBusKind, Settings
from events.listener import Notifications
from events.store import EventStore
from projections.tables import ACTIVE_READ_SCHEMA, READ
from schemas.topics import catalogue


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    store: EventStore
    bus: Bus
    redis: aioredis.Redis
    notifications: Notifications | None = None

    def redis_key(self, name: str) -> str:
        """Redis keys share the deployment's prefix, so deployments can share one Redis."""
        return self.settings.EVENT_TOPIC_PREFIX + name

    async def close(self) -> None:
        if self.notifications is not None:
            await self.notifications.stop()
        await self.bus.stop()
        await self.redis.aclose()
        await self.engine.dispose()
        self.store.close()


def build_bus(settings: Settings) -> Bus:
    if settings.bus is EventBusKind.KAFKA:
        from adapters.bus.kafka import KafkaBus

        assert settings.KAFKA_BOOTSTRAP_SERVERS
        return KafkaBus(settings.KAFKA_BOOTSTRAP_SERVERS, prefix=settings.EVENT_TOPIC_PREFIX,
                        session_timeout_ms=settings.KAFKA_SESSION_TIMEOUT_MS)
    from adapters.bus.redis_streams import RedisStreamsBus

    return RedisStreamsBus(settings.redis_url(), prefix=settings.EVENT_TOPIC_PREFIX)


def build_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_dsn().replace("postgresql://", "postgresql+asyncpg://", 1),
        pool_size=settings.SQLALCHEMY_POOL_SIZE, max_overflow=10, pool_pre_ping=True,
    )
    # Reads and projectors name the logical schema; this picks the live projection version.
    return engine.execution_options(schema_translate_map={READ: ACTIVE_READ_SCHEMA})


async def build(settings: Settings, *, listen: bool = False) -> Container:
    assert settings.DB_HOST and settings.REDIS_HOST, "embedded servers are started by `eddy up`"
    store = EventStore(host=settings.DB_HOST, port=settings.DB_PORT, user=settings.DB_USERNAME,
                       password=settings.DB_PASSWORD, dbname=settings.DB_DATABASE)
    bus = build_bus(settings)
    await bus.start()
    await bus.ensure_topics(catalogue(settings.COMMAND_PARTITIONS, settings.EVENT_PARTITIONS))
    container = Container(
        settings=settings,
        engine=build_engine(settings),
        store=store,
        bus=bus,
        redis=aioredis.from_url(settings.redis_url()),
    )
    if listen:
        from events.store import OUTCOME_CHANNEL
        from projections.runner import PROJECTION_CHANNEL

        container.notifications = Notifications(settings.database_dsn(),
                                                [OUTCOME_CHANNEL, PROJECTION_CHANNEL])
        await container.notifications.start()
    return container


@asynccontextmanager
async def in_process_node(settings: Settings, roles: Sequence[str] | None = None,
                          member: str | None = None) -> AsyncIterator[tuple[Container, FastAPI]]:
    """Gateway app and worker roles in this process (tests, benchmarks, `eddy` dev use)."""
    from gateway.app import create_app
    from workers.node import ALL_ROLES, start_roles

    container = await build(settings, listen=True)
    stop = asyncio.Event()
    tasks = start_roles(container, ALL_ROLES if roles is None else roles, stop, member)
    try:
        yield container, create_app(container)
    finally:
        stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()
        await container.close()
