"""Applies events to a projection: tracking and read-model change in one transaction.

Tracking is per aggregate (last applied version), so it works whatever partition or member
delivers the event: an event at or below the tracked version is a redelivery or replay and
is skipped; one above the next expected version means an earlier one is still on its way,
and is retried later instead of being applied out of order.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from events.envelope import Envelope
from projections.registry import Projection
from projections.tables import projection_tracking
from schemas.base import EventPayload

PROJECTION_CHANNEL = "eddy_projection"


class EventOutOfOrder(Exception):
    """An earlier event of the aggregate has not been applied yet; retry later."""


class UnhandledEvent(Exception):
    """The projection has neither a projector nor an "ignored" entry for this event type:
    a missing registration, which must not silently drop events from the read model."""


class ProjectionRunner:
    def __init__(self, engine: AsyncEngine, projection: Projection) -> None:
        self.engine = engine
        self.projection = projection
        self.name = projection.name

    async def apply(self, event: Envelope[EventPayload]) -> bool:
        """Apply one event; False when it had been applied already."""
        assert event.position is not None, "only stored events are projected"
        if not self.projection.follows(type(event.payload)):
            raise UnhandledEvent(f"{self.name} has no projector for {event.type}")
        t = projection_tracking
        async with self.engine.begin() as conn:
            # Make sure a row exists so FOR UPDATE serialises concurrent appliers.
            await conn.execute(pg_insert(t).values(
                projection=self.name, aggregate_id=event.aggregate_id, version=0, position=0,
            ).on_conflict_do_nothing())
            current = (await conn.execute(
                select(t.c.version).where(t.c.projection == self.name,
                                          t.c.aggregate_id == event.aggregate_id)
                .with_for_update()
            )).scalar_one()
            if event.aggregate_version <= current:
                return False
            if event.aggregate_version != current + 1:
                raise EventOutOfOrder(
                    f"{event.aggregate_type} {event.aggregate_id}: have v{current}, "
                    f"got v{event.aggregate_version}"
                )
            projector = self.projection.handlers.get(type(event.payload))
            if projector is not None:
                await projector(conn, event)
            await conn.execute(
                t.update().where(t.c.projection == self.name,
                                 t.c.aggregate_id == event.aggregate_id)
                .values(version=event.aggregate_version, position=event.position)
            )
            await conn.execute(text("SELECT pg_notify(:channel, :payload)"), {
                "channel": PROJECTION_CHANNEL, "payload": f"{self.name}:{event.position}",
            })
        return True
