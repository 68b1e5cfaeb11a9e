"""The statistics aggregation on its runtimes, side by side on the same event history:
Eddy's statistics projection processor on Redis Streams and on Kafka, and the faust-streaming
app (`bench/statistics_faust.py`) on Kafka. The Kafka broker is tansu on S3 storage (moto),
the configuration that keeps topics, messages and group offsets across a broker restart.

    python -m bench.statistics [--conversations 400] [--runs 200] [--apps 4]
                               [--runtimes eddy-redis,eddy-kafka,faust-kafka]

Each runtime gets a deployment of its own (database, topic prefix) holding the same history:
chat apps' conversations (started, messages asked, answered, liked) and workflow apps' runs
(started, succeeded), each phase a day of its own, appended to the event store as the command
handlers record them and relayed to the bus by Eddy's relay (in this process). The runtime
runs in a child process; its figures (per app and UTC day: messages, tokens, likes, runs,
run tokens, distinct conversations, end users and run creators, from its stat_windows and
stat_members) are compared with the same figures counted by SQL over the event store.

1. **throughput**: day 0 relayed, then the runtime started from nothing: events/s from its
   first figure to exact figures, CPU ms per event of its process tree meanwhile.
2. **faults**, each on a day of its own, while the runtime works through it:
   kill -9 of the runtime (then started again), broker restart (tansu / Valkey), the
   runtime paused (SIGSTOP) past its session while a second member takes over (then
   SIGCONT), replay of day 0 (`eddy events replay`'s publishing). Exact = the figures equal
   the event store's count; a runtime that does not get there is shown by how far off it
   stays once its figures stop changing.

Prints a table: events/s and CPU per event with ratios against the baseline (Eddy on Redis,
the default deployment, measured in the same run), and exactness after each fault.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import boto3
import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.embedded.ports import free_port
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.tansu import TansuBroker, s3_storage
from adapters.embedded.valkey import EmbeddedRedis
from bench import procs
from bootstrap import ASSEMBLY, build
from config import Settings, load_settings
from events.envelope import Envelope
from events.listing import EventFilter
from events.postgres_store import encode_stored
from events.relay import Relay
from events.replay import Replay, ReplaySource
from events.replay import run as replay_run
from migrations.runner import migrate
from projections.statistics import rules, tables
from schemas.base import EventPayload
from schemas.conversation import events as ce
from schemas.workflow import events as we
from workers.processors import projection_processor
from workers.runtime import RetryPolicy, run_processor

RUNTIMES = ("eddy-redis", "eddy-kafka", "faust-kafka")
BASELINE = "eddy-redis"
FAULTS = ("kill -9 mid-window", "broker restart", "paused past session", "replay of a day")
FAULT_NAMES = dict(zip(("kill", "broker", "pause", "replay"), FAULTS, strict=True))
SESSION_SECONDS = 6.0  # Kafka session (both runtimes) and Redis bus lease
SETTLE_SECONDS = 60.0  # figures unchanged this long (after a fault): the runtime is done
TIMEOUT_SECONDS = 600.0
POLL_SECONDS = 0.25
FIRST_DAY = datetime(2026, 11, 1, tzinfo=UTC)


# --- the history: one day of conversations and runs per phase ------------------------------


@dataclass(frozen=True)
class Apps:
    chat: list[uuid.UUID]
    workflow: list[uuid.UUID]
    tenant: uuid.UUID = field(default_factory=uuid.uuid4)


def _day(apps: Apps, day: int, conversations: int, runs: int) -> list[Envelope[EventPayload]]:
    """A day's events in the order the command handlers record them: each conversation
    started, its 1-4 messages asked and answered, some liked; each run started and ended;
    spread over the day (so over many windows), interleaved as users would."""
    rnd = random.Random(day)
    start = FIRST_DAY + timedelta(days=day)
    streams: list[list[tuple[str, uuid.UUID, EventPayload]]] = []
    for c in range(conversations):
        app = apps.chat[c % len(apps.chat)]
        conversation, user = uuid.uuid4(), uuid.UUID(int=rnd.randrange(60) + 1)
        items: list[tuple[str, uuid.UUID, EventPayload]] = [("Conversation", conversation,
                                                             ce.ConversationStarted(
            app_id=app, end_user_id=user, user=f"u{user.int}", mode="chat", name="c",
            inputs={}))]
        for _ in range(rnd.randint(1, 4)):
            message = uuid.uuid4()
            items.append(("Conversation", conversation, ce.MessageCreated(
                message_id=message, task_id=uuid.uuid4(), app_id=app, end_user_id=user,
                mode="chat", query="q", inputs={}, config={})))
            items.append(("Conversation", conversation, ce.MessageAnswered(
                message_id=message, answer="a", usage={
                    "prompt_tokens": rnd.randint(5, 500),
                    "completion_tokens": rnd.randint(5, 500),
                    "total_price": str(Decimal(rnd.randint(1, 99999)) / 10_000_000),
                    "latency": rnd.randint(1, 3000) / 1000})))
            if rnd.random() < 0.3:
                items.append(("Conversation", conversation, ce.MessageFeedbackGiven(
                    message_id=message, rating=rnd.choice(["like", "like", "dislike"]))))
        streams.append(items)
    for r in range(runs):
        app, run = apps.workflow[r % len(apps.workflow)], uuid.uuid4()
        user = uuid.UUID(int=rnd.randrange(40) + 1)
        streams.append([
            ("WorkflowRun", run, we.WorkflowRunStarted(
                app_id=app, workflow_id=app, task_id=uuid.uuid4(), mode="workflow",
                triggered_from=rnd.choice(["app-run", "app-run", "debugging"]),
                user=f"u{user.int}", end_user_id=user, inputs={}, system={})),
            ("WorkflowRun", run, we.WorkflowRunSucceeded(
                outputs={}, elapsed_time=1.0, total_tokens=rnd.randint(0, 2000))),
        ])
    # interleave the aggregates' streams, each in its own order, over the day
    order = [i for i, s in enumerate(streams) for _ in s]
    rnd.shuffle(order)
    versions = [0] * len(streams)
    out: list[Envelope[EventPayload]] = []
    step = timedelta(days=1) / (len(order) + 1)
    for n, i in enumerate(order):
        kind, aggregate, payload = streams[i][versions[i]]
        versions[i] += 1
        cause = uuid.uuid4()
        envelope = Envelope.new(payload, aggregate_type=kind, aggregate_id=aggregate,
                                aggregate_version=versions[i], tenant_id=apps.tenant,
                                correlation_id=cause, causation_id=cause)
        out.append(replace(envelope, occurred_at=start + step * (n + 1)))
    return out


async def _append(dsn: str, events: list[Envelope[EventPayload]]) -> None:
    records = [(s.originator_id, s.originator_version, s.topic, s.state)
               for s in map(encode_stored, events)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "stored_events", columns=["originator_id", "originator_version", "topic", "state"],
            records=records)
    finally:
        await conn.close()


# --- figures: the event store's count and a runtime's ---------------------------------------

Figures = dict[tuple[str, str, str], int | float]  # (app, UTC day, figure) -> value

_EXPECTED = """
WITH e AS (
  SELECT originator_id AS aggregate, split_part(topic, ':', 2) AS type,
         convert_from(state, 'UTF8')::jsonb AS s FROM stored_events),
created AS (
  SELECT aggregate, s->'payload'->>'app_id' AS app, s->'payload'->>'message_id' AS message,
         s->'payload'->>'end_user_id' AS end_user,
         ((s->>'occurred_at')::timestamptz AT TIME ZONE 'UTC')::date AS day
  FROM e WHERE type = 'MessageCreated'),
answered AS (
  SELECT s->'payload'->>'message_id' AS message,
         (s->'payload'->'usage'->>'prompt_tokens')::bigint
         + (s->'payload'->'usage'->>'completion_tokens')::bigint AS tokens
  FROM e WHERE type = 'MessageAnswered'),
liked AS (
  SELECT DISTINCT s->'payload'->>'message_id' AS message FROM e
  WHERE type = 'MessageFeedbackGiven' AND s->'payload'->>'rating' = 'like'),
started AS (
  SELECT aggregate, s->'payload'->>'app_id' AS app,
         coalesce(s->'payload'->>'end_user_id', s->'payload'->>'user') AS creator,
         ((s->>'occurred_at')::timestamptz AT TIME ZONE 'UTC')::date AS day
  FROM e WHERE type = 'WorkflowRunStarted' AND s->'payload'->>'triggered_from' = 'app-run'),
ended AS (
  SELECT aggregate, (s->'payload'->>'total_tokens')::bigint AS tokens
  FROM e WHERE type = 'WorkflowRunSucceeded')
SELECT app, day::text, 'messages', count(*) FROM created GROUP BY 1, 2
UNION ALL SELECT app, day::text, 'conversations', count(DISTINCT aggregate) FROM created
  GROUP BY 1, 2
UNION ALL SELECT app, day::text, 'end_users', count(DISTINCT end_user) FROM created GROUP BY 1, 2
UNION ALL SELECT c.app, c.day::text, 'tokens', sum(a.tokens)
  FROM created c JOIN answered a USING (message) GROUP BY 1, 2
UNION ALL SELECT c.app, c.day::text, 'likes', count(*) FROM created c JOIN liked USING (message)
  GROUP BY 1, 2
UNION ALL SELECT app, day::text, 'runs', count(*) FROM started GROUP BY 1, 2
UNION ALL SELECT app, day::text, 'run_creators', count(DISTINCT creator) FROM started
  GROUP BY 1, 2
UNION ALL SELECT s.app, s.day::text, 'run_tokens', sum(n.tokens)
  FROM started s JOIN ended n USING (aggregate) GROUP BY 1, 2
"""

_MEMBER_FIGURES = {rules.CONVERSATION: "conversations", rules.END_USER: "end_users",
                   rules.RUN_CREATOR: "run_creators"}


def _counted(schema: str) -> str:
    """The same figures from a runtime's windows (`schema`: its stat_windows, stat_members)."""
    day = "(window_start AT TIME ZONE 'UTC')::date::text"
    kinds = " ".join(f"WHEN '{k}' THEN '{f}'" for k, f in _MEMBER_FIGURES.items())
    return f"""
SELECT app_id::text, day, figure, value FROM (
  SELECT app_id, {day} AS day, sum(messages) AS messages,
         sum(message_tokens + answer_tokens) AS tokens, sum(likes) AS likes,
         sum(runs) AS runs, sum(run_tokens) AS run_tokens
  FROM {schema}.stat_windows GROUP BY 1, 2) w
CROSS JOIN LATERAL (VALUES ('messages', messages), ('tokens', tokens), ('likes', likes),
                           ('runs', runs), ('run_tokens', run_tokens)) AS v(figure, value)
UNION ALL
SELECT app_id::text, {day}, CASE kind {kinds} END, count(DISTINCT member)
FROM {schema}.stat_members WHERE count > 0 GROUP BY 1, 2, 3
"""


async def _figures(conn: asyncpg.Connection, sql: str) -> Figures:
    try:
        rows = await conn.fetch(sql)
    except asyncpg.UndefinedTableError:
        return {}
    return {(r[0], r[1], r[2]): r[3] for r in rows if r[3]}


def _difference(expected: Figures, got: Figures) -> str:
    """'exact', or per figure how far the runtime is off in total (+ counted twice, - lost)."""
    off: dict[str, int | float] = {}
    for key in expected.keys() | got.keys():
        delta = got.get(key, 0) - expected.get(key, 0)
        if delta:
            off[key[2]] = off.get(key[2], 0) + delta
    return "exact" if not off else ", ".join(f"{k} {v:+,}" for k, v in sorted(off.items()))


# --- runtimes: child processes --------------------------------------------------------------


@dataclass
class Deployment:
    """One runtime's own database and topics, fed by its own relay (in this process)."""

    name: str
    settings: Settings
    schema: str  # where its figures are
    log_dir: Path
    relay_stop: asyncio.Event = field(default_factory=asyncio.Event)
    relay_task: asyncio.Task[None] | None = None

    @property
    def dsn(self) -> str:
        return self.settings.database_dsn()

    @property
    def faust(self) -> bool:
        return self.name.startswith("faust")


def _env(d: Deployment, member: str) -> dict[str, str]:
    s = d.settings
    env = {**os.environ, "DB_HOST": s.DB_HOST, "DB_PORT": str(s.DB_PORT),
           "DB_USERNAME": s.DB_USERNAME, "DB_PASSWORD": "", "DB_DATABASE": s.DB_DATABASE,
           "REDIS_HOST": s.REDIS_HOST, "REDIS_PORT": str(s.REDIS_PORT),
           "SECRET_KEY": s.SECRET_KEY, "EVENT_BUS": s.EVENT_BUS.value,
           "KAFKA_BOOTSTRAP_SERVERS": s.KAFKA_BOOTSTRAP_SERVERS or "",
           "EVENT_TOPIC_PREFIX": s.EVENT_TOPIC_PREFIX, "LOG_LEVEL": "WARNING",
           "EDDY_DATA_DIR": str(d.log_dir), "MIGRATION_ENABLED": "false",
           "KAFKA_SESSION_TIMEOUT_MS": str(int(SESSION_SECONDS * 1000)),
           "REDIS_BUS_LEASE_SECONDS": str(SESSION_SECONDS), "BENCH_MEMBER": member}
    if d.faust:
        env.update(FAUST_STATISTICS_BROKER=s.KAFKA_BOOTSTRAP_SERVERS or "",
                   FAUST_STATISTICS_TOPIC_PREFIX=s.EVENT_TOPIC_PREFIX,
                   FAUST_STATISTICS_DSN=s.database_dsn(),
                   FAUST_STATISTICS_APP=s.EVENT_TOPIC_PREFIX + "faust-statistics",
                   FAUST_STATISTICS_PARTITIONS=str(s.EVENT_PARTITIONS),
                   FAUST_STATISTICS_SESSION=str(SESSION_SECONDS))
    return env


def _spawn(d: Deployment, member: str) -> subprocess.Popen[bytes]:
    args = (["-m", "bench.statistics_faust", "-l", "warn", "--datadir",
             str(d.log_dir / f"faust-{member}"), "worker", "--without-web"] if d.faust
            else ["-m", "bench.statistics", "--eddy-member"])
    return procs.spawn(args, _env(d, member), d.log_dir / f"{member}.log")


async def _eddy_member() -> None:
    """A child: Eddy's statistics projection processor alone, as a worker's `projections`
    role runs it (the other projections are not measured)."""
    settings = load_settings()
    c = await build(settings)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await run_processor(c.bus, projection_processor(c, c.projections[tables.STATISTICS]),
                            os.environ["BENCH_MEMBER"], stop,
                            RetryPolicy(max_attempts=settings.CONSUMER_MAX_ATTEMPTS),
                            concurrency=settings.CONSUMER_CONCURRENCY)
    finally:
        await c.close()


async def _relay_forever(d: Deployment) -> None:
    """The relay as a worker's supervisor keeps it: restarted when a broker outage stops it."""
    while not d.relay_stop.is_set():
        c = await build(d.settings)
        try:
            await Relay(c.event_types, c.bus, c.routing, d.dsn).run(d.relay_stop)
        except Exception as exc:  # a broker outage: the relay starts again
            print(f"{d.name}: relay stopped ({exc!r:.200}), starting again", file=sys.stderr,
                  flush=True)
            await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(Exception):
                await c.close()


async def _relayed(d: Deployment, timeout: float = TIMEOUT_SECONDS) -> None:
    conn = await asyncpg.connect(d.dsn)
    try:
        deadline = time.monotonic() + timeout
        end = await conn.fetchval("SELECT max(notification_id) FROM stored_events")
        while (await conn.fetchval("SELECT position FROM relay_positions WHERE name = 'relay'")
               or 0) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{d.name}: relay not at {end}")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


class Members:
    """The runtime's member processes, started, stopped and killed here, by PID. A member
    that exits by itself is counted as a crash (its last error kept) and started again, as
    a supervisor (`eddy up`, systemd, Kubernetes) would."""

    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.crashes: list[str] = []
        self._started = 0

    def spawn(self) -> str:
        self._started += 1
        name = f"m{self._started}"
        self.procs[name] = _spawn(self.d, name)
        return name

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs.pop(name).wait()

    def stop(self, name: str) -> None:
        procs.stop(self.procs.pop(name))

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def check(self) -> None:
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.crashes.append(_last_error(self.d.log_dir / f"{name}.log"))
                del self.procs[name]
                self.spawn()

    def cpu(self) -> float:
        return sum(procs.tree_cpu(p.pid) for p in self.procs.values())


def _last_error(log: Path) -> str:
    """The exception a crashed member's log ends with (its class name), printed with the
    first line of its message."""
    text = procs.tail(log, 50_000)
    found = (re.findall(r"Crashed reason=(\w+)\((.{0,200})", text)
             or re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.{0,200})", text,
                           re.MULTILINE))
    if not found:
        return "exited"
    name, message = found[-1]
    print(f"  a member crashed ({log.name}): {name}: {message.split(chr(92))[0]}", flush=True)
    return str(name)


@dataclass
class Outcome:
    seconds: float
    cpu: dict[str, float]  # CPU seconds per process meanwhile
    figures: str


async def _until_done(d: Deployment, members: Members, expected: Figures,
                      cpu: procs.CpuProbes | None = None,
                      during: Callable[[Figures], Awaitable[bool]] | None = None,
                      settle: float = 0.0) -> Outcome:
    """Poll the runtime's figures until they equal `expected` (and stay so `settle` s), or
    stop changing for SETTLE_SECONDS after `during` (the fault) finished, or (with neither
    `during` nor `settle`: a runtime starting from nothing) after its first figure. Time and
    CPU are counted from the first figure that changed."""
    sql = _counted(d.schema)
    conn = await asyncpg.connect(d.dsn)
    crashes = len(members.crashes)

    def outcome(seconds: float, meter: procs.CpuMeter | None, figures: str) -> Outcome:
        new = members.crashes[crashes:]
        if new:
            figures += f"; {len(new)} crash{'es' if len(new) > 1 else ''}: {', '.join(new)}"
        return Outcome(seconds, meter.used() if meter else {}, figures)

    try:
        before = await _figures(conn, sql)
        start = time.monotonic()
        first: tuple[float, procs.CpuMeter | None] | None = None
        last, changed = before, time.monotonic()
        exact_since: float | None = None
        fault_done = during is None
        while True:
            members.check()
            got = await _figures(conn, sql)
            now = time.monotonic()
            if first is None and got != before:
                first = (now, procs.CpuMeter(cpu) if cpu else None)
            if got != last:
                last, changed = got, now
            if not fault_done and during is not None:
                fault_done = await during(got)
                changed = now
            if fault_done and got == expected:
                exact_since = exact_since or now
                if now - exact_since >= settle:
                    f = first or (start, None)
                    return outcome(exact_since - f[0], f[1], "exact")
            else:
                exact_since = None
            # from nothing (the throughput phase), the first figure may take a group join
            if fault_done and now - changed > SETTLE_SECONDS and (
                    first is not None or during is not None or settle > 0):
                f = first or (start, None)
                return outcome(changed - f[0], f[1], _difference(expected, got))
            if now - start > TIMEOUT_SECONDS:
                raise TimeoutError(f"{d.name}: {_difference(expected, got)}")
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await conn.close()


def _messages(figures: Figures, day: int) -> int:
    date = (FIRST_DAY + timedelta(days=day)).date().isoformat()
    return int(sum(v for (_, d, f), v in figures.items() if d == date and f == "messages"))


# --- one runtime through the phases ---------------------------------------------------------


@dataclass
class Result:
    events: int = 0
    throughput: Outcome | None = None
    faults: dict[str, str] = field(default_factory=dict)


async def _expected(d: Deployment) -> Figures:
    conn = await asyncpg.connect(d.dsn)
    try:
        return await _figures(conn, _EXPECTED)
    finally:
        await conn.close()


async def run_runtime(d: Deployment, days: list[list[Envelope[EventPayload]]],
                      broker: Callable[[], None], infra: procs.CpuProbes,
                      faults: list[str]) -> Result:
    result = Result(events=len(days[0]))
    d.relay_task = asyncio.create_task(_relay_forever(d))
    members = Members(d)
    try:
        await _append(d.dsn, days[0])
        await _relayed(d)
        print(f"{d.name}: day 0 ({len(days[0]):,} events) relayed", flush=True)
        members.spawn()
        result.throughput = await _until_done(d, members, await _expected(d),
                                              {d.name: members.cpu, **infra})
        print(f"{d.name}: {result.events / result.throughput.seconds:,.0f} events/s "
              f"({result.throughput.figures}); CPU per event: "
              f"{procs.format_cpu(result.throughput.cpu, result.events, 'ms')}", flush=True)

        async def mid_day(day: int, act: Callable[[], Awaitable[None]]) -> str:
            """Append and relay `day`; `act` once a third of its messages are counted."""
            await _append(d.dsn, days[day])
            expected = await _expected(d)
            wanted = _messages(expected, day) // 3
            acted = False

            async def during(got: Figures) -> bool:
                nonlocal acted
                if not acted and _messages(got, day) >= wanted:
                    acted = True
                    await act()
                    return True
                return False

            outcome = await _until_done(d, members, expected, during=during)
            return outcome.figures if acted else "fault came too late"

        async def kill() -> None:
            members.kill(next(iter(members.procs)))
            members.spawn()

        async def restart_broker() -> None:
            await asyncio.to_thread(broker)

        async def pause() -> None:
            """The member stops past its session while a second one takes its partitions;
            then it resumes, and both run on until the figures settle."""
            paused = next(iter(members.procs))
            os.killpg(members.pid(paused), signal.SIGSTOP)
            members.spawn()
            await asyncio.sleep(3 * SESSION_SECONDS)
            os.killpg(members.pid(paused), signal.SIGCONT)

        for name, act, day in ((FAULTS[0], kill, 1), (FAULTS[1], restart_broker, 2),
                               (FAULTS[2], pause, 3)):
            if name in faults:
                result.faults[name] = await mid_day(day, act)
                print(f"{d.name}: {name}: {result.faults[name]}", flush=True)
        if FAULTS[3] in faults:
            result.faults[FAULTS[3]] = await _replay_day(d, members)
            print(f"{d.name}: {FAULTS[3]}: {result.faults[FAULTS[3]]}", flush=True)
        return result
    finally:
        members.stop_all()
        d.relay_stop.set()
        await asyncio.gather(d.relay_task, return_exceptions=True)


async def _replay_day(d: Deployment, members: Members) -> str:
    """`eddy events replay --since <day 0> --until <day 1>`: day 0 published again to every
    group of its topics; the figures must not move."""
    expected = await _expected(d)
    c = await build(d.settings)
    try:
        with psycopg.connect(d.settings.database_dsn().replace("+asyncpg", "")) as conn:
            source = ReplaySource(conn, EventFilter(since=FIRST_DAY,
                                                    until=FIRST_DAY + timedelta(days=1)),
                                  ASSEMBLY.event_types)
            await replay_run(Replay(source.selection, groups=[]), source, c.routing, c.bus)
    finally:
        await c.close()
    return (await _until_done(d, members, expected, settle=SETTLE_SECONDS)).figures


# --- the run --------------------------------------------------------------------------------


async def _deployment(name: str, pg: EmbeddedPostgres, redis: EmbeddedRedis, kafka: str,
                      root: Path) -> Deployment:
    db = name.replace("-", "_")
    pg.create_database(db)
    settings = load_settings(
        DB_HOST=pg.host, DB_PORT=pg.port, DB_USERNAME=pg.user, DB_PASSWORD="", DB_DATABASE=db,
        REDIS_HOST=redis.host, REDIS_PORT=redis.port, SECRET_KEY="bench-secret-key-0123456789",
        EVENT_BUS="redis" if name.endswith("redis") else "kafka",
        KAFKA_BOOTSTRAP_SERVERS=kafka, EVENT_TOPIC_PREFIX=f"{db}.", LOG_LEVEL="WARNING",
        MIGRATION_ENABLED=False, EDDY_DATA_DIR=str(root / name),
        KAFKA_SESSION_TIMEOUT_MS=int(SESSION_SECONDS * 1000),
        REDIS_BUS_LEASE_SECONDS=SESSION_SECONDS)
    await asyncio.to_thread(migrate, settings)
    c = await build(settings)  # creates the topics with their partition counts
    await c.close()
    schema = "faust_statistics"
    if name.startswith("faust"):
        engine = create_async_engine(settings.database_dsn())
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
            await conn.run_sync(lambda sync: tables.metadata.create_all(
                sync.execution_options(schema_translate_map={tables.READ: schema}),
                tables=[tables.stat_windows, tables.stat_members]))
        await engine.dispose()
    else:
        conn = await asyncpg.connect(settings.database_dsn())
        schema = await conn.fetchval(
            "SELECT schema_name FROM projection_versions WHERE projection = $1 AND active",
            tables.STATISTICS)
        await conn.close()
    (root / name).mkdir(parents=True, exist_ok=True)
    return Deployment(name, settings, schema, root / name)


def _tables(results: Mapping[str, Result]) -> str:
    """Markdown: throughput and CPU against the baseline, then exactness per fault."""
    def rate(r: Result) -> float:
        return r.events / r.throughput.seconds if r.throughput else 0.0

    def cpu_ms(r: Result, part: str | None = None) -> float:
        used = r.throughput.cpu if r.throughput else {}
        seconds = used.get(part, 0.0) if part else sum(used.values())
        return seconds / r.events * 1e3

    base = results.get(BASELINE)
    lines = ["| runtime | events/s | ÷ baseline | CPU ms/event: runtime + Postgres + broker"
             " = total | ÷ baseline |", "|---|---:|---:|---|---:|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {rate(r):,.0f} | {rate(r) / rate(base) if base else 0:.2f} | "
            f"{cpu_ms(r, name):.2f} + {cpu_ms(r, 'postgres'):.2f} + {cpu_ms(r, 'broker'):.2f}"
            f" = {cpu_ms(r):.2f} | {cpu_ms(r) / cpu_ms(base) if base else 0:.2f} |")
    lines += ["", "| after | " + " | ".join(results) + " |",
              "|---|" + "---|" * len(results)]
    lines += [f"| {fault} | " + " | ".join(r.faults.get(fault, "-") for r in results.values())
              + " |" for fault in FAULTS]
    return "\n".join(lines)


async def main(runtimes: list[str], faults: list[str], conversations: int, runs: int,
               apps: int) -> int:
    root = Path(tempfile.mkdtemp(prefix="eddy-bench-statistics-"))
    os.chmod(root, 0o755)  # the embedded Postgres runs as its own system user
    completed = False
    pg = EmbeddedPostgres(root / "pg").start()
    redis = EmbeddedRedis(root / "valkey").start()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    s3_port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    endpoint = f"http://127.0.0.1:{s3_port}"
    boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="tansu")
    tansu = TansuBroker(storage=s3_storage("tansu", endpoint), log_path=root / "tansu.log")
    tansu.start()
    try:
        the_apps = Apps([uuid.uuid4() for _ in range(apps)], [uuid.uuid4() for _ in range(apps)])
        days = [_day(the_apps, day, conversations if day == 0 else conversations // 3,
                     runs if day == 0 else runs // 3) for day in range(4)]

        def restart(broker: TansuBroker | EmbeddedRedis) -> Callable[[], None]:
            def again() -> None:
                broker.stop()
                broker.start()
            return again

        results: dict[str, Result] = {}
        for name in runtimes:
            d = await _deployment(name, pg, redis, tansu.bootstrap_servers, root)
            broker: TansuBroker | EmbeddedRedis = redis if name.endswith("redis") else tansu
            results[name] = await run_runtime(d, days, restart(broker), {
                "postgres": lambda: procs.tree_cpu(procs.postmaster_pid(pg)),
                "broker": lambda b=broker: procs.tree_cpu(b.pid)}, faults)
        print(f"\nhistory: day 0 {len(days[0]):,} events, fault days "
              f"{', '.join(f'{len(x):,}' for x in days[1:])}; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print(_tables(results))
        completed = True
        return 0
    finally:
        tansu.stop()
        s3.stop()
        redis.stop()
        pg.stop()
        procs.finish(root, completed)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.statistics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--apps", type=int, default=4)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--faults", default=",".join(FAULT_NAMES),
                        help=f"comma-separated subset of {','.join(FAULT_NAMES)}")
    parser.add_argument("--eddy-member", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def cli() -> None:
    args = _parse()
    if args.eddy_member:
        asyncio.run(_eddy_member())
        return
    runtimes = [r for r in args.runtimes.split(",") if r]
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        raise SystemExit(f"unknown runtimes: {', '.join(sorted(unknown))}")
    faults = [f for f in args.faults.split(",") if f]
    if set(faults) - set(FAULT_NAMES):
        raise SystemExit(f"unknown faults: {', '.join(sorted(set(faults) - set(FAULT_NAMES)))}")
    raise SystemExit(asyncio.run(main(runtimes, [FAULT_NAMES[f] for f in faults],
                                      args.conversations, args.runs, args.apps)))


if __name__ == "__main__":
    cli()
