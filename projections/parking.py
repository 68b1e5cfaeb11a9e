"""Parked events: what a read-model version does with an event whose apply fails for good.

The policy (README, "Projection versions and rebuilds"):

- The projection processor retries a failing event like any message (`workers/runtime.py`);
  when it gives up, the message goes to its dead-letter topic and the processor's
  dead-letter hook parks the event in every maintained version that has not applied it
  (`park`). A version parks only its own failures: the others went on.
- Parked, the aggregate keeps its gap, visibly: its later events are not applied (the read
  model never shows them on top of a missing one) nor dead-lettered again; they wait behind
  the parked one. Every other aggregate goes on. `eddy projections status`, `/status`
  and `/health` count them apart from the lag (`parked`), so a parked event is a data
  problem an operator sees, never a "stalled" projection a liveness probe restarts.
- The operator decides, with `eddy dlq`: `replay` (after a fix) delivers the event again
  and the version applies it and the aggregate's later events from the event store;
  `drop --reason` skips it (`skip`): the version records the skip and the reason here,
  moves the aggregate's tracking past it and applies its later events. Either way the
  row stays in `projection_parked` with its resolution.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events.envelope import Envelope

log = logging.getLogger(__name__)

RETRIED, SKIPPED = "retried", "skipped"


@dataclass(frozen=True)
class ParkedEvent:
    projection: str  # the version's name (its schema)
    aggregate_type: str
    aggregate_id: UUID
    aggregate_version: int
    event_type: str
    position: int
    error: str
    parked_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {"version": self.projection, "aggregate_type": self.aggregate_type,
                "aggregate_id": str(self.aggregate_id),
                "aggregate_version": self.aggregate_version, "event_type": self.event_type,
                "position": self.position, "error": self.error,
                "parked_at": self.parked_at.isoformat()}


async def park(engine: AsyncEngine, name: str, event: Envelope[Any],
               error: BaseException) -> bool:
    """Parks `event` in the version `name` unless that version applied it already (or
    parked an earlier event of its aggregate). True when it parked it."""
    async with engine.begin() as conn:
        row = (await conn.execute(text(
            "INSERT INTO projection_tracking (projection, aggregate_id, version, position)"
            " VALUES (:p, :id, 0, 0) ON CONFLICT (projection, aggregate_id)"
            " DO UPDATE SET version = projection_tracking.version"
            " RETURNING version, parked_version"),
            {"p": name, "id": event.aggregate_id})).one()
        applied, parked = int(row[0]), row[1]
        if applied >= event.aggregate_version or (
                parked is not None and parked <= event.aggregate_version):
            return False
        await conn.execute(text(
            "UPDATE projection_tracking SET parked_version = :v"
            " WHERE projection = :p AND aggregate_id = :id"),
            {"p": name, "id": event.aggregate_id, "v": event.aggregate_version})
        await conn.execute(text(
            "INSERT INTO projection_parked (projection, aggregate_id, aggregate_version,"
            "  aggregate_type, event_type, position, error, parked_at)"
            " VALUES (:p, :id, :v, :at, :et, :pos, :error, :now)"
            " ON CONFLICT (projection, aggregate_id, aggregate_version) DO UPDATE"
            " SET error = excluded.error, parked_at = excluded.parked_at,"
            "     resolved_at = NULL, resolution = NULL, reason = NULL"), {
                "p": name, "id": event.aggregate_id, "v": event.aggregate_version,
                "at": event.aggregate_type, "et": event.type, "pos": event.position or 0,
                "error": repr(error)[:2000], "now": datetime.now(UTC)})
    log.error("event parked", extra={
        "version": name, "aggregate_id": str(event.aggregate_id),
        "aggregate_version": event.aggregate_version, "event_type": event.type,
        "error": repr(error)[:300]})
    return True


async def parked_events(engine: AsyncEngine | AsyncConnection,
                        name: str | None = None) -> list[ParkedEvent]:
    """The events parked now (unresolved), oldest first; of one version, or of all."""
    query = text(
        "SELECT p.projection, p.aggregate_type, p.aggregate_id, p.aggregate_version,"
        "       p.event_type, p.position, p.error, p.parked_at"
        " FROM projection_parked p JOIN projection_tracking t"
        "   ON t.projection = p.projection AND t.aggregate_id = p.aggregate_id"
        "  AND t.parked_version = p.aggregate_version"
        " WHERE p.resolved_at IS NULL AND (CAST(:p AS text) IS NULL OR p.projection = :p)"
        " ORDER BY p.position")
    if isinstance(engine, AsyncConnection):
        rows = (await engine.execute(query, {"p": name})).all()
    else:
        async with engine.connect() as conn:
            rows = (await conn.execute(query, {"p": name})).all()
    return [ParkedEvent(r[0], r[1], UUID(str(r[2])), int(r[3]), r[4], int(r[5]), r[6], r[7])
            for r in rows]


async def mark_skipped(conn: AsyncConnection, name: str, event: Envelope[Any],
                       reason: str) -> bool:
    """Moves the aggregate's tracking past its parked `event` and records the skip with its
    reason; False when that event is not parked in the version `name`."""
    moved = (await conn.execute(text(
        "UPDATE projection_tracking SET version = :v, position = :pos, parked_version = NULL"
        " WHERE projection = :p AND aggregate_id = :id AND parked_version = :v"
        " RETURNING 1"), {"p": name, "id": event.aggregate_id, "v": event.aggregate_version,
                          "pos": event.position or 0})).first()
    if moved is None:
        return False
    await _resolve(conn, name, event, SKIPPED, reason)
    log.warning("parked event skipped", extra={
        "version": name, "aggregate_id": str(event.aggregate_id),
        "aggregate_version": event.aggregate_version, "reason": reason})
    return True


async def resolve_retried(conn: AsyncConnection, name: str, event: Envelope[Any]) -> None:
    await _resolve(conn, name, event, RETRIED, None)


async def _resolve(conn: AsyncConnection, name: str, event: Envelope[Any], resolution: str,
                   reason: str | None) -> None:
    await conn.execute(text(
        "UPDATE projection_parked SET resolved_at = :now, resolution = :r, reason = :reason"
        " WHERE projection = :p AND aggregate_id = :id AND aggregate_version = :v"
        "   AND resolved_at IS NULL"), {
            "now": datetime.now(UTC), "r": resolution, "reason": reason, "p": name,
            "id": event.aggregate_id, "v": event.aggregate_version})
