"""The statistics aggregation as a faust-streaming app on the Kafka bus: the other runtime
`python -m bench.statistics` measures against Eddy's statistics projection.

    python -m bench.statistics_faust -l warn worker --without-web

Configured by the environment (the benchmark sets it): FAUST_STATISTICS_BROKER (host:port),
FAUST_STATISTICS_TOPIC_PREFIX (Eddy's EVENT_TOPIC_PREFIX), FAUST_STATISTICS_DSN (Postgres),
FAUST_STATISTICS_APP (faust's app id: the consumer group and the changelog topics' prefix),
FAUST_STATISTICS_PARTITIONS (the context topics' partition count), FAUST_STATISTICS_SESSION
(seconds).

The counting rules are Eddy's (`projections/statistics/rules.py`), applied through `TableFacts`,
a `Facts` over faust tables. Two stages, because a faust table's changelog partition is the
partition of the event that wrote it, so a key must only ever be written from one partition:

1. `tally_events` over the context topics (keyed by aggregate): the aggregate's applied version
   (`applied_versions`: redeliveries and replays are skipped, as Eddy's projection tracking
   does), the facts (`conversation_facts`, `message_facts`, `run_facts`) and the rules. The
   window changes a rule makes are sent to a repartition topic keyed by app, each stamped
   with its event's aggregate version and its place among that event's changes.
2. `add_windows` over that topic: the changes summed into windowed tables (tumbling 60 s:
   `windows` per app, `window_members` per app, kind and member), a change at or below its
   aggregate's stamp (`applied_changes`) skipped; a timer sinks the changed windows into
   Postgres (`faust_statistics.stat_windows`, `stat_members`: the statistics read model's
   shape), so both runtimes' figures are compared by the same SQL.

Everything is at-least-once (tansu has no transactions, so faust's exactly-once is out):
a table write, its changelog record and the source offset are not committed together.
"""

from __future__ import annotations

import os
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, TypeVar, get_type_hints
from uuid import UUID

import asyncpg
import faust
from faust.types import StreamT

from bootstrap import ASSEMBLY
from events.envelope import Envelope
from projections.statistics import rules
from projections.statistics.rules import ConversationFact, Counters, MessageFact, RunFact
from schemas.topics import event_topic

BROKER = os.environ.get("FAUST_STATISTICS_BROKER", "127.0.0.1:9092")
TOPIC_PREFIX = os.environ.get("FAUST_STATISTICS_TOPIC_PREFIX", "eddy.")
DSN = os.environ.get("FAUST_STATISTICS_DSN", "")
PARTITIONS = int(os.environ.get("FAUST_STATISTICS_PARTITIONS", "4"))
SESSION_SECONDS = float(os.environ.get("FAUST_STATISTICS_SESSION", "6"))
SINK_SCHEMA = "faust_statistics"
SINK_INTERVAL = 0.2  # seconds between two sinks of the changed windows
WINDOW_SECONDS = rules.WINDOW.total_seconds()
COUNTED = (rules.CONVERSATION_RULES, rules.WORKFLOW_RULES)
F = TypeVar("F")
T = TypeVar("T")

app = faust.App(
    os.environ.get("FAUST_STATISTICS_APP", "faust-statistics"),
    broker=f"kafka://{BROKER}",
    store="memory://",
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    processing_guarantee="at_least_once",  # exactly_once needs transactions: tansu has none
    consumer_auto_offset_reset="earliest",  # tansu's "latest" offsets are wrong
    broker_session_timeout=SESSION_SECONDS,
    broker_heartbeat_interval=max(0.1, SESSION_SECONDS / 3),
    producer_acks=-1,
    web_enabled=False,
)

source = app.topic(*(TOPIC_PREFIX + event_topic(context) for context in ("conversation",
                                                                           "workflow")),
                   key_serializer="raw", value_serializer="raw")
changes = app.topic(TOPIC_PREFIX + "faust-statistics-changes", partitions=PARTITIONS,
                    key_serializer="raw", value_serializer="json")

applied_versions = app.Table("applied-versions", default=int)
conversation_facts = app.Table("conversation-facts")
message_facts = app.Table("message-facts")
run_facts = app.Table("run-facts")
applied_changes = app.Table("applied-changes")
windows = app.Table("windows", default=dict).tumbling(WINDOW_SECONDS)
window_members = app.Table("window-members", default=int).tumbling(WINDOW_SECONDS)


# --- facts as table values (faust serializes them as JSON) --------------------------------


def _encode(fact: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(fact):
        value = getattr(fact, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else (
            str(value) if isinstance(value, UUID) else value)
    return out


def _decoder(cls: type[F]) -> Any:
    hints = get_type_hints(cls)

    def decode(raw: dict[str, Any] | None) -> F | None:
        if raw is None:
            return None
        values = {}
        for name, value in raw.items():
            kind = hints[name]
            values[name] = (UUID(value) if kind is UUID else datetime.fromisoformat(value)
                            if kind is datetime else value)
        return cls(**values)

    return decode


_conversation = _decoder(ConversationFact)
_message = _decoder(MessageFact)
_run = _decoder(RunFact)


class TableFacts:
    """The rules' facts in faust tables; the window changes they make collected for the
    repartition topic (`changes`), in order."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, dict[str, Any]]] = []

    async def conversation(self, conversation_id: UUID) -> ConversationFact | None:
        return _conversation(conversation_facts.get(str(conversation_id)))  # type: ignore[no-any-return]

    async def put_conversation(self, fact: ConversationFact) -> None:
        conversation_facts[str(fact.conversation_id)] = _encode(fact)

    async def message(self, message_id: UUID) -> MessageFact | None:
        return _message(message_facts.get(str(message_id)))  # type: ignore[no-any-return]

    async def put_message(self, fact: MessageFact) -> None:
        message_facts[str(fact.message_id)] = _encode(fact)

    async def drop_message(self, message_id: UUID) -> None:
        message_facts.pop(str(message_id), None)

    async def run(self, run_id: UUID) -> RunFact | None:
        return _run(run_facts.get(str(run_id)))  # type: ignore[no-any-return]

    async def put_run(self, fact: RunFact) -> None:
        run_facts[str(fact.run_id)] = _encode(fact)

    async def drop_run(self, run_id: UUID) -> None:
        run_facts.pop(str(run_id), None)

    async def add(self, app_id: UUID, window: datetime, counters: Counters) -> None:
        if counters:
            self.changes.append((str(app_id), {"window": window.timestamp(),
                                               "counters": dict(counters.items())}))

    async def add_member(self, app_id: UUID, window: datetime, kind: str, member: str,
                         count: int) -> None:
        self.changes.append((str(app_id), {"window": window.timestamp(), "kind": kind,
                                           "member": member, "count": count}))


# --- stage 1: the rules, per aggregate ----------------------------------------------------


@app.agent(source)
async def tally_events(stream: StreamT[bytes]) -> None:
    async for value in stream:
        event: Envelope[Any] = ASSEMBLY.event_types.envelope_from_json(value)
        if not any(type(event.payload) in counted for counted in COUNTED):
            continue
        aggregate = str(event.aggregate_id)
        if event.aggregate_version <= applied_versions[aggregate]:
            continue  # a redelivery or a replay
        facts = TableFacts()
        await rules.tally(event, facts)
        for seq, (app_id, change) in enumerate(facts.changes):
            await changes.send(key=app_id.encode(), value={
                **change, "app": app_id, "source": aggregate,
                "stamp": [event.aggregate_version, seq]})
        applied_versions[aggregate] = event.aggregate_version


# --- stage 2: the windows, per app --------------------------------------------------------

_changed_windows: set[tuple[str, float]] = set()
_changed_members: set[tuple[str, float, str, str]] = set()


def _member_key(app_id: str, kind: str, member: str) -> str:
    return f"{app_id}|{kind}|{member}"


@app.agent(changes)
async def add_windows(stream: StreamT[dict[str, Any]]) -> None:
    async for change in stream:
        stamp = change["stamp"]
        if applied_changes.get(change["source"], [0, -1]) >= stamp:
            continue  # sent again by a stage-1 redelivery
        app_id, at = change["app"], change["window"]
        span = windows.table.window.current(at)
        if "counters" in change:
            total = dict(windows[app_id][span])
            for name, value in change["counters"].items():
                total[name] = total.get(name, 0) + value
            windows[app_id][span] = total
            _changed_windows.add((app_id, span[0]))
        else:
            key = _member_key(app_id, change["kind"], change["member"])
            window_members[key][span] = window_members[key][span] + change["count"]
            _changed_members.add((app_id, span[0], change["kind"], change["member"]))
        applied_changes[change["source"]] = stamp


# --- the sink: changed windows into Postgres -----------------------------------------------

_pool: list[asyncpg.Pool] = []


@app.task
async def open_sink() -> None:
    _pool.append(await asyncpg.create_pool(DSN, min_size=1, max_size=2))


@windows.on_recover
async def resink_recovered() -> None:
    """Windows recovered from the changelog may be newer than what the sink wrote before
    a crash: all are sunk again."""
    for key in list(windows.table.keys()):
        app_id, span = key
        _changed_windows.add((app_id, span[0]))
    for key in list(window_members.table.keys()):
        member_key, span = key
        app_id, kind, member = member_key.split("|", 2)
        _changed_members.add((app_id, span[0], kind, member))


@app.timer(SINK_INTERVAL)
async def sink() -> None:
    if not _pool or not (_changed_windows or _changed_members):
        return
    window_rows = [(UUID(a), datetime.fromtimestamp(start, UTC), *_window_values(a, start))
                   for a, start in _take(_changed_windows)]
    member_rows = [(UUID(a), datetime.fromtimestamp(start, UTC), kind, member,
                    window_members.table.get((_member_key(a, kind, member),
                                              windows.table.window.current(start)), 0))
                   for a, start, kind, member in _take(_changed_members)]
    names = ", ".join(rules.COUNTER_NAMES)
    marks = ", ".join(f"${i}" for i in range(3, len(rules.COUNTER_NAMES) + 3))
    async with _pool[0].acquire() as conn, conn.transaction():
        if window_rows:
            await conn.executemany(
                f"INSERT INTO {SINK_SCHEMA}.stat_windows (app_id, window_start, {names})"
                f" VALUES ($1, $2, {marks}) ON CONFLICT (app_id, window_start) DO UPDATE SET "
                + ", ".join(f"{n} = excluded.{n}" for n in rules.COUNTER_NAMES), window_rows)
        if member_rows:
            await conn.executemany(
                f"INSERT INTO {SINK_SCHEMA}.stat_members"
                " (app_id, window_start, kind, member, count) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (app_id, window_start, kind, member)"
                " DO UPDATE SET count = excluded.count", member_rows)
            await conn.execute(f"DELETE FROM {SINK_SCHEMA}.stat_members WHERE count = 0")


def _take(changed: set[T]) -> list[T]:
    taken = list(changed)
    changed.clear()
    return taken


def _window_values(app_id: str, start: float) -> list[int | float]:
    total = windows.table.get((app_id, windows.table.window.current(start)), {})
    return [total.get(name, 0) for name in rules.COUNTER_NAMES]


if __name__ == "__main__":
    app.main()
