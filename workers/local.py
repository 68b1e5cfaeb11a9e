"""A node without Postgres or a broker: one process on the memory event store, bus and
key-value store, with the read model in SQLite (the unit tier runs the real gateway on it).

The relay and the projection processors are Postgres' (advisory locks, LISTEN/NOTIFY,
tracking upserts); here one loop does their work, in store order: each batch of stored
events is applied to the active version of every projection (with its tracking rows, in
one transaction), its projection notices are published, and it is relayed to its topics.
The command processor and the contexts' processors run unchanged on the memory bus, and
the store announces outcomes as Postgres would NOTIFY them, so the gateway's command path
(outcome, then read-your-writes) is the production one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.bus.base import OutgoingMessage
from events.envelope import Envelope
from events.listener import Notifications
from events.memory_store import InMemoryEventStore
from events.relay import message_headers
from events.store import OUTCOME_CHANNEL, CommandOutcome, outcome_notice, outcome_row
from projections.registry import Projection
from projections.runner import PROJECTION_CHANNEL
from projections.tables import projection_tracking
from schemas.base import EventPayload
from workers.container import WorkerContainer
from workers.node import processors_of
from workers.runtime import RetryPolicy, run_processor

log = logging.getLogger(__name__)
BATCH = 500
IDLE_SECONDS = 0.005  # how often an idle loop looks at the store again


def announce_outcomes(store: InMemoryEventStore, notifications: Notifications) -> None:
    """Outcomes reach the waiting gateway as notices, as Postgres NOTIFYs them."""
    loop = asyncio.get_running_loop()

    def announce(outcome: CommandOutcome) -> None:
        loop.call_soon_threadsafe(notifications.publish, OUTCOME_CHANNEL,
                                  outcome_notice(outcome_row(outcome)))

    store.on_outcome = announce


class ProjectAndRelay:
    def __init__(self, c: WorkerContainer, notifications: Notifications) -> None:
        self.c = c
        self.notifications = notifications
        self.position = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            events = await asyncio.to_thread(self.c.store.read_from, self.position, BATCH)
            if not events:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
                continue
            for projection in self.c.projections.values():
                await self._project(projection, events)
            await self.c.bus.publish_many([
                OutgoingMessage(topic, str(e.aggregate_id), e.to_json(), message_headers(e))
                for e in events for topic in self.c.routing.topics_for(e)])
            self.position = events[-1].position or self.position

    async def _project(self, projection: Projection,
                       events: Sequence[Envelope[EventPayload]]) -> None:
        version = self.c.read_models.active(projection.name)
        followed = [e for e in events if e.aggregate_type in projection.aggregate_types]
        if not followed:
            return
        async with self.c.read_models.engine_for(version).begin() as conn:
            await projection.apply(conn, followed)
            for e in followed:
                await _track(conn, version.schema, e)
        for e in followed:
            self.notifications.publish(
                PROJECTION_CHANNEL, f"{version.schema}:{e.aggregate_id}:{e.aggregate_version}")


async def _track(conn: AsyncConnection, name: str, event: Envelope[EventPayload]) -> None:
    t = projection_tracking
    await conn.execute(sqlite_insert(t).values(
        projection=name, aggregate_id=event.aggregate_id, version=0, position=0,
    ).on_conflict_do_nothing())
    await conn.execute(update(t).where(t.c.projection == name,
                                       t.c.aggregate_id == event.aggregate_id).values(
        version=event.aggregate_version, position=event.position))


def start_local_roles(c: WorkerContainer, notifications: Notifications,
                      stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The command processor, every processor the contexts contribute, and the loop that
    projects and relays (the scheduler's jobs measure Postgres: not run here)."""
    member = "local"
    runners = [ProjectAndRelay(c, notifications).run]
    for role in ("commands", *c.work):
        for processor in processors_of(c, role):
            runners.append(lambda stop, p=processor: run_processor(
                c.bus, p, member, stop,
                RetryPolicy(max_attempts=c.settings.CONSUMER_MAX_ATTEMPTS),
                concurrency=c.settings.CONSUMER_CONCURRENCY))
    return [asyncio.create_task(_logged(run, stop), name="local") for run in runners]


async def _logged(run: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event) -> None:
    # No supervisor restarts it here: a crash shows in the log (and in the test that waits).
    try:
        await run(stop)
    except Exception:
        log.exception("local role crashed")
        raise
