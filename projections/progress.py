"""How far a projection has got, measured against the event store (correct on any broker).

An event is pending for a projection when the projection's tracked version of its aggregate
is below the event's version. Pending events of an aggregate with a parked event
(`projections/parking.py`) wait for an operator: they are counted apart (`waiting`), not as
lag, which is what the projection can still catch up on by itself. The watermark (every
event at or below it applied) bounds the scan; it is advanced whenever lag is measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections.reads import autocommit
from projections.tables import projection_tracking

_PENDING = """
    FROM stored_events e
    LEFT JOIN projection_tracking t
      ON t.projection = :projection AND t.aggregate_id = e.originator_id
    WHERE e.notification_id > :low AND e.notification_id <= :high
      AND split_part(e.topic, ':', 1) = ANY(:aggregate_types)
      AND (t.version IS NULL OR t.version < e.originator_version)
"""


async def _watermark(engine: AsyncEngine, projection: str) -> int:
    async with engine.connect() as conn:
        value = (await conn.execute(
            text("SELECT watermark FROM projection_checkpoints WHERE projection = :p"),
            {"p": projection},
        )).scalar()
    return int(value or 0)


async def _advance_watermark(conn: AsyncConnection, projection: str, watermark: int) -> None:
    await conn.execute(text(
        "INSERT INTO projection_checkpoints (projection, watermark, updated_at)"
        " VALUES (:p, :w, :now) ON CONFLICT (projection) DO UPDATE"
        " SET watermark = greatest(projection_checkpoints.watermark, excluded.watermark),"
        "     updated_at = excluded.updated_at"
    ), {"p": projection, "w": watermark, "now": datetime.now(UTC)})


@dataclass(frozen=True)
class Backlog:
    lag: int  # pending events the projection will apply by itself
    waiting: int  # pending events behind a parked one (parked ones included)


async def measure_backlog(engine: AsyncEngine, projection: str,
                          aggregate_types: list[str]) -> Backlog:
    """Events the projection has not applied yet; advances its watermark as a side effect."""
    low = await _watermark(engine, projection)
    params = {"projection": projection, "low": low, "aggregate_types": aggregate_types}
    async with engine.begin() as conn:
        high = int((await conn.execute(
            text("SELECT coalesce(max(notification_id), 0) FROM stored_events"))).scalar() or 0)
        params["high"] = high
        row = (await conn.execute(text(
            "SELECT count(*) FILTER (WHERE t.parked_version IS NULL),"
            "       count(*) FILTER (WHERE t.parked_version IS NOT NULL),"
            f"      min(e.notification_id) {_PENDING}"), params)).one()
        lag, waiting, first_pending = int(row[0]), int(row[1]), row[2]
        new_watermark = (first_pending - 1) if first_pending is not None else high
        await _advance_watermark(conn, projection, new_watermark)
    return Backlog(lag, waiting)


async def measure_lag(engine: AsyncEngine, projection: str, aggregate_types: list[str]) -> int:
    """Events the projection has not applied yet and will apply by itself."""
    return (await measure_backlog(engine, projection, aggregate_types)).lag


async def aggregates_projected(engine: AsyncEngine, projection: str,
                               aggregates: Mapping[UUID, int]) -> bool:
    """True when the projection has applied each aggregate up to at least its version:
    read-your-writes for one command, one index lookup per aggregate, whatever else is
    still pending for other tenants."""
    if not aggregates:
        return True
    t = projection_tracking.c
    async with autocommit(engine) as conn:
        applied = dict((await conn.execute(select(t.aggregate_id, t.version).where(
            t.projection == projection, t.aggregate_id.in_(list(aggregates))))).all())
    return all(applied.get(i, 0) >= version for i, version in aggregates.items())


async def relay_lag(engine: AsyncEngine) -> int:
    """Stored events the relay has not published yet."""
    async with engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT count(*) FROM stored_events WHERE notification_id >"
            " coalesce((SELECT position FROM relay_positions WHERE name = 'relay'), 0)"
        ))).scalar() or 0)
