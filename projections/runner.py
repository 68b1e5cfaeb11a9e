"""Applies events to a projection: tracking and read-model change in one transaction.

Tracking is per aggregate (last applied version), so it works whatever partition or member
delivers the event: an event at or below the tracked version is a redelivery or replay and
is skipped; one above the next expected version means earlier ones are still on their way,
so they are read from the event store and applied first (their own delivery is then a
redelivery).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events.envelope import Envelope
from events.store import EventStore
from projections.registry import Projection
from projections.tables import projection_tracking
from schemas.base import EventPayload

PROJECTION_CHANNEL = "eddy_projection"


class EventOutOfOrder(Exception):
    """A gap the event store cannot fill: the record and the delivered event disagree."""


class UnhandledEvent(Exception):
    """The projection has neither a projector nor an "ignored" entry for this event type:
    a missing registration, which must not silently drop events from the read model."""


class ProjectionRunner:
    def __init__(self, engine: AsyncEngine, projection: Projection, store: EventStore) -> None:
        self.engine = engine
        self.projection = projection
        self.store = store  # to fill a version gap from the record
        self.name = projection.name

    async def apply(self, event: Envelope[EventPayload]) -> bool:
        """Apply one event; False when it had been applied already."""
        return await self.apply_many([event]) == 1

    async def apply_many(self, events: Sequence[Envelope[EventPayload]]) -> int:
        """Apply events (one partition's batch, in order) in one transaction: all or none.
        Returns how many were new (the rest were redeliveries or replays)."""
        for event in events:
            assert event.position is not None, "only stored events are projected"
            if not self.projection.follows(type(event.payload)):
                raise UnhandledEvent(f"{self.name} has no projector for {event.type}")
        applied = 0
        async with self.engine.begin() as conn:
            for event in events:
                applied += await self._apply(conn, event)
        return applied

    async def _apply(self, conn: AsyncConnection, event: Envelope[EventPayload]) -> bool:
        t = projection_tracking
        # Creates the tracking row if missing and locks it either way, so concurrent
        # appliers of one aggregate queue here; returns the version applied so far.
        current = (await conn.execute(
            pg_insert(t).values(projection=self.name, aggregate_id=event.aggregate_id,
                                version=0, position=0)
            .on_conflict_do_update(index_elements=[t.c.projection, t.c.aggregate_id],
                                   set_={"version": t.c.version})
            .returning(t.c.version))).scalar_one()
        if event.aggregate_version <= current:
            return False
        for step in await self._with_missing(event, current):
            projector = self.projection.handlers.get(type(step.payload))
            if projector is not None:
                await projector(conn, step)
        tracked = (t.update().where(t.c.projection == self.name,
                                    t.c.aggregate_id == event.aggregate_id)
                   .values(version=event.aggregate_version, position=event.position)
                   .returning(t.c.version).cte("tracked"))
        # whoever waits for this aggregate (read-your-writes) re-checks
        await conn.execute(select(func.pg_notify(
            PROJECTION_CHANNEL, f"{self.name}:{event.aggregate_id}")).select_from(tracked))
        return True

    async def _with_missing(self, event: Envelope[EventPayload],
                            current: int) -> list[Envelope[EventPayload]]:
        """The event, preceded by the aggregate's events between the tracked version and it
        when some are still on their way (a gap): those are read from the event store, the
        record, so the projection never waits on the transport's order."""
        if event.aggregate_version == current + 1:
            return [event]
        history = await asyncio.to_thread(self.store.load, event.aggregate_id)
        missing = [e for e in history if current < e.aggregate_version < event.aggregate_version]
        if len(missing) != event.aggregate_version - current - 1:
            raise EventOutOfOrder(f"{event.aggregate_type} {event.aggregate_id}: have "
                                  f"v{current}, got v{event.aggregate_version}, store has "
                                  f"{[e.aggregate_version for e in history]}")
        return [*missing, event]
