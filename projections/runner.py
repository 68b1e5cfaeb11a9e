"""Applies events to a projection: tracking and read-model change in one transaction.

Tracking is per aggregate (last applied version), so it works whatever partition or member
delivers the event: an event at or below the tracked version is a redelivery or replay and
is skipped; one above the next expected version means earlier ones are still on their way,
so they are read from the event store and applied first (their own delivery is then a
redelivery).

A runner applies to one version of the projection (`projections/versions.py`): its engine is
mapped to the version's schema, and its tracking rows carry the version's name.

An aggregate with a parked event (`projections/parking.py`) is held: its later events are
not applied (counted as parked, not lag) until the parked event is delivered again (then it
and everything after it in the store are applied) or skipped by the operator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.transient import is_transient
from events.envelope import Envelope
from events.store import EventStore
from projections.parking import mark_skipped, park, resolve_retried
from projections.registry import Projection
from schemas.base import EventPayload

PROJECTION_CHANNEL = "eddy_projection"


class EventOutOfOrder(Exception):
    """A gap the event store cannot fill: the record and the delivered event disagree."""


class UnhandledEvent(Exception):
    """The projection has neither a projector nor an "ignored" entry for this event type:
    a missing registration, which must not silently drop events from the read model."""


class ProjectionRunner:
    def __init__(self, engine: AsyncEngine, projection: Projection, store: EventStore,
                 name: str) -> None:
        self.engine = engine  # mapped to the version's schema (projections.layout)
        self.projection = projection
        self.store = store  # to fill a version gap from the record
        self.name = name  # the version's tracking name (its schema)

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
        async with self.engine.begin() as conn:
            tracked = await self._lock_tracking(conn, {e.aggregate_id for e in events})
            applied = {i: version for i, (version, _) in tracked.items()}
            parked = {i: p for i, (_, p) in tracked.items() if p is not None}
            advanced: dict[UUID, tuple[int, int]] = {}  # aggregate -> (version, position)
            steps: list[Envelope[EventPayload]] = []  # what to apply, gaps filled
            new = 0
            for event in events:
                current = applied[event.aggregate_id]
                if event.aggregate_version <= current:
                    continue  # a redelivery or replay
                held = parked.get(event.aggregate_id)
                if held is not None and event.aggregate_version != held:
                    continue  # waits behind its aggregate's parked event
                if held is not None:
                    # The parked event again (`eddy dlq replay`): it and the events that
                    # waited behind it, from the store.
                    found = await self._resumed(event, current)
                    await resolve_retried(conn, self.name, event)
                    del parked[event.aggregate_id]
                else:
                    found = await self._with_missing(event, current)
                steps += found
                applied[event.aggregate_id] = found[-1].aggregate_version
                # loaded events carry no position: the delivered one's is the latest known
                advanced[event.aggregate_id] = (found[-1].aggregate_version,
                                                found[-1].position or event.position or 0)
                new += 1
            await self.projection.apply(conn, steps)
            if advanced:
                await self._advance_tracking(conn, advanced)
        return new

    async def _lock_tracking(self, conn: AsyncConnection,
                             ids: set[UUID]) -> dict[UUID, tuple[int, int | None]]:
        """The version applied so far of each aggregate and its parked version, if any,
        with its tracking row created if
        missing and locked either way (in id order, so two appliers cannot deadlock), so
        concurrent appliers of one aggregate queue here. One statement for the batch."""
        ordered = sorted(ids)
        rows = await conn.execute(text(
            "INSERT INTO projection_tracking (projection, aggregate_id, version, position)"
            " SELECT :projection, id, 0, 0 FROM unnest(CAST(:ids AS uuid[])) AS id"
            " ON CONFLICT (projection, aggregate_id)"
            " DO UPDATE SET version = projection_tracking.version"
            " RETURNING aggregate_id, version, parked_version"),
            {"projection": self.name, "ids": ordered})
        return {UUID(str(r[0])): (int(r[1]), r[2]) for r in rows}

    async def _advance_tracking(self, conn: AsyncConnection,
                                advanced: dict[UUID, tuple[int, int]]) -> None:
        """Record the new versions, and tell whoever waits for one of these aggregates
        (read-your-writes) that it reached its version ("<projection>:<id>:<version>"):
        one statement for the batch."""
        ids = list(advanced)
        await conn.execute(text(
            "WITH moved AS ("
            " UPDATE projection_tracking t SET version = v.version, position = v.position,"
            "   parked_version = NULL"
            " FROM unnest(CAST(:ids AS uuid[]), CAST(:versions AS bigint[]),"
            "             CAST(:positions AS bigint[])) AS v(id, version, position)"
            " WHERE t.projection = :projection AND t.aggregate_id = v.id"
            " RETURNING t.aggregate_id, t.version)"
            " SELECT count(pg_notify(:channel,"
            "   :projection || ':' || aggregate_id::text || ':' || version::text))"
            " FROM moved"), {
                "projection": self.name, "channel": PROJECTION_CHANNEL, "ids": ids,
                "versions": [advanced[i][0] for i in ids],
                "positions": [advanced[i][1] for i in ids]})

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

    async def _resumed(self, event: Envelope[EventPayload],
                       current: int) -> list[Envelope[EventPayload]]:
        """The aggregate's events after `current` up to its newest, from the store."""
        history = await asyncio.to_thread(self.store.load, event.aggregate_id)
        return [e for e in history if e.aggregate_version > current] or [event]

    async def skip_parked(self, event: Envelope[EventPayload], reason: str) -> bool:
        """The operator gives up on the parked `event` in this version: the skip is recorded
        with its reason, the aggregate moves past it, and its later events are applied from
        the store (one failing for good is parked in turn). False when it is not parked."""
        async with self.engine.begin() as conn:
            if not await mark_skipped(conn, self.name, event, reason):
                return False
        history = await asyncio.to_thread(self.store.load, event.aggregate_id)
        for later in (e for e in history if e.aggregate_version > event.aggregate_version):
            try:  # one at a time: a failure parks that one alone
                await self._apply_loaded(later, event.position or 0)
            except Exception as exc:
                if is_transient(exc):
                    raise
                await park(self.engine, self.name, later, exc)
                break
        return True

    async def _apply_loaded(self, event: Envelope[EventPayload], position: int) -> None:
        """An event loaded from the store (loaded events carry no position: `position`, the
        latest known, is tracked), if it is the aggregate's next one."""
        async with self.engine.begin() as conn:
            [(version, parked)] = (await self._lock_tracking(conn, {event.aggregate_id})).values()
            if event.aggregate_version != version + 1 or parked is not None:
                return
            await self.projection.apply(conn, [event])
            await self._advance_tracking(conn, {event.aggregate_id: (event.aggregate_version,
                                                                     position)})
