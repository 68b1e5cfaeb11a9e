"""The statistics projection: the counting rules (`projections/statistics/rules.py`) applied by
Eddy's projection runtime, with their facts and windows kept in the read model
(`projections/statistics/tables.py`).

`SqlFacts` is the rules' `Facts` over the projector's connection: Postgres live, SQLite when a
rebuild folds the event store (`projections/rebuild.py`), so the writes are dialect upserts.
The runner applies each event once, in its aggregate's order (tracking commits in the same
transaction as these rows): what the rules assume. Facts are rows of one aggregate each (the
runner holds its lock). Windows and members are sums that concurrent batches of other
aggregates add to: a batch's changes are gathered and added once per row at its end, in key
order (`write_windows`), never read and written back. Facts are read at most once per batch
and written once at its end (`write_facts`): a batch of N events costs a statement per table,
not two per event.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.registry import Projector, Projectors, batch_state
from projections.statistics.rules import (
    COUNTER_NAMES,
    ConversationFact,
    Counters,
    MessageFact,
    Rule,
    RunFact,
)
from projections.statistics.tables import (
    STATISTICS,
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
    """The rules' facts in the statistics read model, on one connection. A batch reads each
    fact row at most once and writes the ones it changed once, at its end (`write_facts`);
    its changes of windows and members are gathered for its end too (`write_windows`)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _one(self, table: Table, fact_id: UUID) -> dict[str, Any] | None:
        known = _pending().facts.setdefault(table, {})
        if fact_id in known:
            return known[fact_id]
        row = (await self.conn.execute(
            select(table).where(table.c[_FACT_KEYS[table]] == fact_id))).first()
        found = None
        if row is not None:
            found = dict(row._mapping)
            found["window"] = _utc(found.pop("window_start"))
        known[fact_id] = found
        return found

    def _put(self, table: Table, fact_id: UUID, fact: Any) -> None:
        _pending().facts.setdefault(table, {})[fact_id] = asdict(fact)
        _pending().changed.add((table, fact_id))

    def _drop(self, table: Table, fact_id: UUID) -> None:
        _pending().facts.setdefault(table, {})[fact_id] = None
        _pending().changed.add((table, fact_id))

    async def conversation(self, conversation_id: UUID) -> ConversationFact | None:
        found = await self._one(stat_conversations, conversation_id)
        if found is None:
            return None
        return ConversationFact(**{**found, "message_ids": tuple(found["message_ids"])})

    async def put_conversation(self, fact: ConversationFact) -> None:
        self._put(stat_conversations, fact.conversation_id, fact)

    async def message(self, message_id: UUID) -> MessageFact | None:
        found = await self._one(stat_messages, message_id)
        return MessageFact(**found) if found else None

    async def put_message(self, fact: MessageFact) -> None:
        self._put(stat_messages, fact.message_id, fact)

    async def drop_message(self, message_id: UUID) -> None:
        self._drop(stat_messages, message_id)

    async def run(self, run_id: UUID) -> RunFact | None:
        found = await self._one(stat_runs, run_id)
        return RunFact(**found) if found else None

    async def put_run(self, fact: RunFact) -> None:
        self._put(stat_runs, fact.run_id, fact)

    async def drop_run(self, run_id: UUID) -> None:
        self._drop(stat_runs, run_id)

    async def add(self, app_id: UUID, window: datetime, counters: Counters) -> None:
        sums = _pending().windows.setdefault((app_id, window), Tally())
        sums.update(dict(counters.items()))

    async def add_member(self, app_id: UUID, window: datetime, kind: str, member: str,
                         count: int) -> None:
        _pending().members[(app_id, window, kind, member)] += count


_FACT_KEYS = {stat_conversations: "conversation_id", stat_messages: "message_id",
              stat_runs: "run_id"}


@dataclass
class _Pending:
    """What a batch's events made of the statistics, written once at its end."""

    # fact rows as the batch left them (None: none, or dropped), by table and id
    facts: dict[Table, dict[UUID, dict[str, Any] | None]] = field(default_factory=dict)
    changed: set[tuple[Table, UUID]] = field(default_factory=set)
    windows: dict[tuple[UUID, datetime], Tally[str]] = field(default_factory=dict)
    members: Tally[tuple[UUID, datetime, str, str]] = field(default_factory=Tally)


def _pending() -> _Pending:
    return batch_state().setdefault(STATISTICS, _Pending())  # type: ignore[no-any-return]


def _insert(conn: AsyncConnection, table: Table) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


async def write_facts(conn: AsyncConnection) -> None:
    """The fact rows the batch changed: per table one upsert of those it put and one delete
    of those it dropped, in id order."""
    pending: _Pending | None = batch_state().get(STATISTICS)
    if pending is None:
        return
    for table, key in _FACT_KEYS.items():
        ids = sorted(i for t, i in pending.changed if t is table)
        kept = [pending.facts[table][i] for i in ids if pending.facts[table][i] is not None]
        if kept:
            rows = [{**{k: v for k, v in fact.items() if k != "window"},
                     "window_start": fact["window"]} for fact in kept]
            statement = _insert(conn, table)
            await conn.execute(statement.on_conflict_do_update(
                index_elements=[table.c[key]],
                set_={k: statement.excluded[k] for k in rows[0] if k != key}), rows)
        dropped = [i for i in ids if pending.facts[table][i] is None]
        if dropped:
            await conn.execute(delete(table).where(table.c[key].in_(dropped)))


async def write_windows(conn: AsyncConnection) -> None:
    """The batch's changes of windows and members: one upsert per key, in key order (every
    batch takes the rows' locks in the same order: none waits for another in a cycle)."""
    pending = batch_state().pop(STATISTICS, None)
    if pending is None:
        return
    rows = [{"app_id": app_id, "window_start": window,
             **{name: sums[name] for name in COUNTER_NAMES}}
            for (app_id, window), sums in sorted(pending.windows.items()) if any(sums.values())]
    if rows:
        statement = _insert(conn, stat_windows)
        await conn.execute(statement.on_conflict_do_update(
            index_elements=[stat_windows.c.app_id, stat_windows.c.window_start],
            set_={name: stat_windows.c[name] + statement.excluded[name]
                  for name in COUNTER_NAMES}), rows)
    changed = sorted((key, count) for key, count in pending.members.items() if count)
    if not changed:
        return
    m = stat_members.c
    statement = _insert(conn, stat_members)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[m.app_id, m.window_start, m.kind, m.member],
        set_={"count": m.count + statement.excluded.count}), [
        {"app_id": a, "window_start": w, "kind": k, "member": member, "count": count}
        for (a, w, k, member), count in changed])
    gone = [{"a": a, "w": w, "k": k, "m": member}
            for (a, w, k, member), count in changed if count < 0]
    if gone:  # a member no row holds any more is not kept
        await conn.execute(delete(stat_members).where(
            m.app_id == bindparam("a"), m.window_start == bindparam("w"),
            m.kind == bindparam("k"), m.member == bindparam("m"), m.count <= 0), gone)


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
                      ignored=frozenset(events) - rules.keys(),
                      after_apply=(write_facts, write_windows))
