"""The statistics projection: the counting rules (`projections/statistics/rules.py`) applied by
Eddy's projection runtime, with their facts and windows kept in the read model
(`projections/statistics/tables.py`).

`SqlFacts` is the rules' `Facts` over the projector's connection: Postgres live, SQLite when a
rebuild folds the event store (`projections/rebuild.py`), so the writes are dialect upserts.
The runner applies each event once, in its aggregate's order (tracking commits in the same
transaction as these rows): what the rules assume. Windows are sums that concurrent
transactions of other aggregates add to, so they are only ever changed by addition, never
read and written back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.registry import Projector, Projectors
from projections.statistics.rules import (
    ConversationFact,
    Counters,
    MessageFact,
    Rule,
    RunFact,
)
from projections.statistics.tables import (
    stat_conversations,
    stat_members,
    stat_messages,
    stat_runs,
    stat_windows,
)
from schemas.base import EventPayload


def _utc(at: datetime) -> datetime:
    # SQLite gives back what it stored without the zone: the rules store UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class SqlFacts:
    """The rules' facts and windows in the statistics read model, on one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    def _insert(self, table: Table) -> Any:
        return (pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert)(table)

    async def _one(self, table: Table, key: str, value: UUID) -> dict[str, Any] | None:
        row = (await self.conn.execute(select(table).where(table.c[key] == value))).first()
        if row is None:
            return None
        found = dict(row._mapping)
        found["window"] = _utc(found.pop("window_start"))
        return found

    async def _put(self, table: Table, key: str, fact: Any) -> None:
        values = asdict(fact)
        values["window_start"] = values.pop("window")
        statement = self._insert(table).values(**values)
        await self.conn.execute(statement.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={k: statement.excluded[k] for k in values if k != key}))

    async def conversation(self, conversation_id: UUID) -> ConversationFact | None:
        found = await self._one(stat_conversations, "conversation_id", conversation_id)
        if found is None:
            return None
        return ConversationFact(**{**found, "message_ids": tuple(found["message_ids"])})

    async def put_conversation(self, fact: ConversationFact) -> None:
        await self._put(stat_conversations, "conversation_id", fact)

    async def message(self, message_id: UUID) -> MessageFact | None:
        found = await self._one(stat_messages, "message_id", message_id)
        return MessageFact(**found) if found else None

    async def put_message(self, fact: MessageFact) -> None:
        await self._put(stat_messages, "message_id", fact)

    async def drop_message(self, message_id: UUID) -> None:
        await self.conn.execute(delete(stat_messages).where(
            stat_messages.c.message_id == message_id))

    async def run(self, run_id: UUID) -> RunFact | None:
        found = await self._one(stat_runs, "run_id", run_id)
        return RunFact(**found) if found else None

    async def put_run(self, fact: RunFact) -> None:
        await self._put(stat_runs, "run_id", fact)

    async def drop_run(self, run_id: UUID) -> None:
        await self.conn.execute(delete(stat_runs).where(stat_runs.c.run_id == run_id))

    async def add(self, app_id: UUID, window: datetime, counters: Counters) -> None:
        changed = counters.items()
        if not changed:
            return
        statement = self._insert(stat_windows).values(
            app_id=app_id, window_start=window, **dict(changed))
        await self.conn.execute(statement.on_conflict_do_update(
            index_elements=[stat_windows.c.app_id, stat_windows.c.window_start],
            set_={name: stat_windows.c[name] + statement.excluded[name]
                  for name, _ in changed}))

    async def add_member(self, app_id: UUID, window: datetime, kind: str, member: str,
                         count: int) -> None:
        key = {"app_id": app_id, "window_start": window, "kind": kind, "member": member}
        statement = self._insert(stat_members).values(**key, count=count)
        await self.conn.execute(statement.on_conflict_do_update(
            index_elements=[stat_members.c[k] for k in key],
            set_={"count": stat_members.c.count + statement.excluded.count}))
        if count < 0:  # a member no row holds any more is not kept
            m = stat_members.c
            await self.conn.execute(delete(stat_members).where(
                m.app_id == app_id, m.window_start == window, m.kind == kind,
                m.member == member, m.count <= 0))


def _projector(rule: Rule) -> Projector:
    async def project(conn: AsyncConnection, e: Envelope[Any]) -> None:
        await rule(e, SqlFacts(conn))

    project.__name__ = f"project_{rule.__name__}"
    return project


def statistics_projectors(rules: Mapping[type[EventPayload], Rule],
                          events: Iterable[type[EventPayload]]) -> Projectors:
    """A context's part of the statistics projection: a projector per event type its rules
    count (`rules.CONVERSATION_RULES`, `rules.WORKFLOW_RULES`); the context's other `events`
    change no figure and are ignored."""
    return Projectors(handlers={event: _projector(rule) for event, rule in rules.items()},
                      ignored=frozenset(events) - rules.keys())
