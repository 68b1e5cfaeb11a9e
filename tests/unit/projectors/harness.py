"""How the projectors of the console read model are tested, in process: realistic event
sequences applied to the read-model tables in an in-memory SQLite database (SQLAlchemy's
async engine over aiosqlite), then the rows the API shows checked, through the read side's
own queries where they are portable SQL.

Production runs the same projectors on Postgres (tests/e2e cover that). Each event is
applied in its own transaction, as `ProjectionRunner` does. Every test names the event types
it exercises (`@exercises(...)`) and fails unless it applied them all; test_coverage.py
fails for a projector that no test of any context exercises.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from sqlalchemy import RowMapping, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bootstrap import ASSEMBLY
from events.envelope import Envelope
from projections.tables import PROJECTION_NAME, READ, metadata
from schemas.base import EventPayload

PROJECTION = ASSEMBLY.projections[PROJECTION_NAME]
READ_TABLES = [t for t in metadata.sorted_tables if t.schema == READ]
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
P = TypeVar("P", bound=EventPayload)


# --- the harness -------------------------------------------------------------------------------


class World:
    """An empty read model, one workspace's actors, and the events applied so far."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.tenant = uuid4()
        self.actor = uuid4()
        self.applied: set[type[EventPayload]] = set()
        self._versions: dict[UUID, int] = {}
        self._position = 0

    async def emit(self, aggregate_type: str, aggregate_id: UUID, payload: P,
                   tenant_id: UUID | None = None) -> Envelope[P]:
        """The aggregate's next event (one second after the previous one), applied."""
        event = await self.envelope(aggregate_type, aggregate_id, payload, tenant_id)
        await apply(self, event)
        return event

    async def envelope(self, aggregate_type: str, aggregate_id: UUID, payload: P,
                       tenant_id: UUID | None = None) -> Envelope[P]:
        """The aggregate's next event (one second after the previous one), not applied."""
        self._position += 1
        version = self._versions[aggregate_id] = self._versions.get(aggregate_id, 0) + 1
        cid = uuid4()
        event = Envelope.new(payload, aggregate_type=aggregate_type, aggregate_id=aggregate_id,
                             aggregate_version=version, tenant_id=tenant_id or self.tenant,
                             correlation_id=cid, causation_id=cid)
        return replace(event, occurred_at=T0 + timedelta(seconds=self._position),
                       position=self._position)

    async def row(self, table: Table, key: UUID) -> RowMapping | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(table).where(table.c.id == key))).mappings().first()

    async def one(self, table: Table, key: UUID) -> RowMapping:
        found = await self.row(table, key)
        assert found is not None, f"no {table.name} row {key}"
        return found

    async def rows(self, table: Table, *where: Any) -> Sequence[RowMapping]:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(table).where(*where))).mappings().all()


async def apply(world: World, event: Envelope[EventPayload]) -> None:
    """As the runner does: the projection applies it (its projector, then the batch's
    steps), in a transaction of its own."""
    assert type(event.payload) in PROJECTION.handlers, event.type
    async with world.engine.begin() as conn:
        await PROJECTION.apply(conn, [event])
    world.applied.add(type(event.payload))


def stored(e: Envelope[Any]) -> datetime:
    """An event's time as SQLite gives it back (UTC, without its zone)."""
    return e.occurred_at.replace(tzinfo=None)


Scenario = Callable[[World], Awaitable[None]]
SCENARIOS: dict[type[EventPayload], list[str]] = {}


def exercises(*event_types: type[EventPayload]) -> Callable[[Scenario], Scenario]:
    """Names the test as a scenario of these event types; it fails unless it applies them."""

    def register(test: Scenario) -> Scenario:
        for event_type in event_types:
            SCENARIOS.setdefault(event_type, []).append(test.__name__)

        @functools.wraps(test)
        async def checked(world: World) -> None:
            await test(world)
            missing = sorted(t.__name__ for t in set(event_types) - world.applied)
            assert not missing, f"{test.__name__} never applied {missing}"

        return checked

    return register
