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
from projections.projectors import PROJECTORS, Projector
from projections.tables import PROJECTION_NAME, projection_tracking

PROJECTION_CHANNEL = "eddy_projection"


class EventOutOfOrder(Exception):
    """An earlier event of the aggregate has not been applied yet; retry later."""


class ProjectionRunner:
    def __init__(self, engine: AsyncEngine, name: str = PROJECTION_NAME,
                 projectors: dict[str, Projector] | None = None) -> None:
        self.engine = engine
        self.name = name
        self.projectors = PROJECTORS if projectors is None else projectors

    async def apply(self, event: Envelope) -> bool:
        """Apply one event; False when it had been applied already."""
        assert event.position is not None, "only stored events are projected"
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
            projector = self.projectors.get(event.type)
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
