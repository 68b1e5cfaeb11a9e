"""The statistics projection under faults, on both buses (Redis Streams on a Valkey of the
test's own; Kafka on a tansu of its own with durable storage), its workers separate
processes: killed (SIGKILL) mid-window, a broker restart while conversations keep coming, a
worker paused (SIGSTOP) past its lease or session while another member takes its partitions
over and then resumed, a day of events replayed to its group, a poison event parked and
skipped, and a rebuild. After each, every one-minute window (sums and members) equals what
SQL over the event store says (`tests/monitoring.py`): an event counted once, never lost,
never twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.tansu import TansuBroker
from adapters.embedded.valkey import EmbeddedRedis
from config import Settings
from events.postgres_store import PostgresEventStore
from projections.progress import relay_lag
from projections.runner import ProjectionRunner
from projections.statistics.tables import STATISTICS
from projections.versions import maintained_lags
from schemas.conversation import events as ev
from tests.harness import (
    Node,
    event_store,
    eventually,
    migrate,
    node_settings,
    running_node,
)
from tests.integration.conftest import operator_env
from tests.integration.test_cli_operations import eddy, json_lines
from tests.integration.test_restarts_mid_work import Servers, kill_valkey
from tests.integration.test_self_healing import durable_kafka  # noqa: F401 (a fixture)
from tests.monitoring import (
    Asked,
    History,
    counted,
    expected_windows,
    projected_windows,
    usage,
)

ROOT = Path(__file__).resolve().parents[2]
GROUP = f"projection.{STATISTICS}"
LIVE, REBUILT = f"{STATISTICS}_v1", f"{STATISTICS}_v2"


@dataclass
class Bus:
    """The bus under test and how to restart its broker."""

    name: str
    redis_url: str
    kafka_bootstrap: str | None
    restart: Callable[[], Any]  # async: crash the broker, bring it back on its data


@pytest.fixture(params=["redis", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest, postgres: EmbeddedPostgres) -> Bus:
    if request.param == "redis":
        valkey: EmbeddedRedis = request.getfixturevalue("own_redis")
        return Bus("redis", valkey.url, None, lambda: kill_valkey(Servers(postgres, valkey)))
    tansu: TansuBroker = request.getfixturevalue("durable_kafka")

    async def restart_tansu() -> None:
        await asyncio.to_thread(tansu.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(tansu.start)

    return Bus("kafka", request.getfixturevalue("redis_url"), tansu.bootstrap_servers,
               restart_tansu)


@pytest.fixture
def settings(bus: Bus, postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    return operator_env(monkeypatch, node_settings(
        postgres, fresh_database("statfault"), bus.redis_url, bus.kafka_bootstrap,
        **FAULT_SETTINGS))


# A lease and a session short enough for a paused member to lose its partitions soon.
FAULT_SETTINGS: dict[str, Any] = {
    "REDIS_BUS_LEASE_SECONDS": 1, "KAFKA_SESSION_TIMEOUT_MS": 3000, "CONSUMER_MAX_ATTEMPTS": 2,
    "COMMAND_TIMEOUT_SECONDS": 5, "PROJECTION_WAIT_SECONDS": 5}


# -- the write side: conversations, their answers and feedback --------------------------------

@dataclass
class Traffic:
    """Conversations of two apps recorded in the event store, as the command handlers
    record them: new ones, follow-ups, answers, feedback given, changed and withdrawn."""

    store: PostgresEventStore
    seed: int = 0
    apps: list[History] = field(default_factory=list)
    asked: list[tuple[History, Asked]] = field(default_factory=list)

    def __post_init__(self) -> None:
        tenant = uuid4()
        self.apps = [History(self.store, tenant, uuid4()) for _ in range(2)]
        self.rng = random.Random(self.seed)

    def turns(self, count: int, at: Callable[[], datetime], pace: float = 0.0,
              stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        for _ in range(count):
            if stop.is_set():
                return
            self.turn(at())
            stop.wait(pace)

    def turn(self, at: datetime) -> None:
        rng = self.rng
        answer = usage(rng.randint(1, 50), rng.randint(1, 80),
                       f"0.{rng.randint(0, 99999):07d}", round(rng.uniform(0.01, 2), 6))
        if self.asked and rng.random() < 0.3:  # a follow-up in an earlier conversation
            app, earlier = rng.choice(self.asked)
            asked = app.ask(earlier.user, at, answer, earlier.conversation_id)
        else:
            app = rng.choice(self.apps)
            asked = app.ask(f"user{rng.randint(0, 5)}", at, answer)
        self.asked.append((app, asked))
        if rng.random() < 0.5:
            app, rated = rng.choice(self.asked)
            app.feedback(rated, rng.choice(["like", "like", "dislike", None]), at)


@asynccontextmanager
async def writing(traffic: Traffic, count: int, pace: float = 0.03) -> AsyncIterator[None]:
    """`count` turns happening now, `pace` seconds apart, while the block runs; all of them
    recorded when it ends."""
    stop = threading.Event()
    task = asyncio.create_task(asyncio.to_thread(
        traffic.turns, count, lambda: datetime.now(UTC), pace, stop))
    try:
        yield
        await task
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)


# -- the statistics workers -------------------------------------------------------------------

class Workers:
    """`eddy worker --roles projections` processes, by member name."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = logs  # what they said, for a failure's report

    def spawn(self, member: str) -> None:
        # A stable member name: a restarted process is the same member (a pod's name).
        with (self.logs / f"{member}.log").open("ab") as log:
            self.procs[member] = subprocess.Popen(
                [sys.executable, "-m", "cli", "worker", "--roles", "projections", "--member",
                 member], env=self.env, cwd=ROOT, stdout=log, stderr=log)

    def signal(self, member: str, sig: signal.Signals) -> None:
        self.procs[member].send_signal(sig)

    def kill(self, member: str) -> None:
        self.procs[member].send_signal(signal.SIGKILL)
        self.procs[member].wait()

    def close(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(settings, tmp_path)
    try:
        yield running
    finally:
        running.close()


async def owners(node: Node) -> set[str]:
    """The members owning partitions of the statistics group now."""
    topics = sorted(node.container.projections[STATISTICS].topics)
    state = await node.container.bus.group_state(GROUP, topics)
    return {m for m, partitions in state.members.items() if partitions}


async def assert_exact(node: Node, skipped: list[int] | None = None) -> None:
    """Once caught up, every window and member count equals the event store's."""
    engine, projections = node.container.engine, node.container.projections.values()
    try:
        await eventually(lambda: counted(engine, projections), timeout=60, interval=0.3)
    except AssertionError as exc:  # say where it stands
        lags = await maintained_lags(engine, projections)
        topics = sorted(node.container.projections[STATISTICS].topics)
        state = await node.container.bus.group_state(GROUP, topics)
        raise AssertionError(f"not caught up: relay lag {await relay_lag(engine)}, {lags}, "
                             f"{state}") from exc
    async with node.container.engine.connect() as conn:
        expected = await expected_windows(conn, skipped or [])
        projected = await projected_windows(conn, LIVE)
    assert expected[0], "windows were counted"
    assert projected == expected


# -- the faults, in the order the scenario runs them ---------------------------------------------

async def kill_mid_window(node: Node, traffic: Traffic, workers: Workers, turns: int) -> None:
    """SIGKILL while a minute's events are being counted; the same member comes back."""
    async with writing(traffic, turns):
        await asyncio.sleep(turns * 0.01)
        workers.kill("stat-1")
        workers.spawn("stat-1")
    await assert_exact(node)


async def pause_past_lease(node: Node, traffic: Traffic, workers: Workers, turns: int) -> None:
    """SIGSTOP past its lease/session: another member takes every partition over and counts
    what comes meanwhile; SIGCONT: the stale member counts nothing twice."""
    workers.spawn("stat-2")
    await eventually(lambda: _has(owners(node), "stat-2"), timeout=60, interval=0.3)
    workers.signal("stat-1", signal.SIGSTOP)
    try:
        async with writing(traffic, turns):
            await eventually(lambda: _only(owners(node), "stat-2"), timeout=60, interval=0.3)
        await assert_exact(node)  # counted by the member that took over, alone
    finally:
        workers.signal("stat-1", signal.SIGCONT)
    async with writing(traffic, turns):
        pass
    await assert_exact(node)


async def restart_broker(node: Node, traffic: Traffic, bus: Bus, turns: int) -> None:
    async with writing(traffic, turns):
        await asyncio.sleep(turns * 0.01)
        await bus.restart()
    await assert_exact(node)


async def replay_yesterday(node: Node, yesterday: datetime) -> None:
    """`eddy events replay` of a whole day to the statistics group changes nothing."""
    async with node.container.engine.connect() as conn:
        before = await projected_windows(conn, LIVE)
    code, out, err = await eddy(
        "events", "replay", "--since", yesterday.isoformat(),
        "--until", (yesterday + timedelta(days=1)).isoformat(), "--group", GROUP, "--json")
    assert code == 0, err
    [report] = json_lines(out)
    assert report["by_group"][GROUP] > 0, report
    topics = sorted(node.container.projections[STATISTICS].topics)

    async def acknowledged() -> bool:
        state = await node.container.bus.group_state(GROUP, topics)
        return state.oldest_unacked is None

    await eventually(acknowledged, timeout=60, interval=0.3)
    await assert_exact(node)
    async with node.container.engine.connect() as conn:
        assert await projected_windows(conn, LIVE) == before


async def rebuild_equals_live(node: Node) -> None:
    """`eddy projections rebuild statistics` folds the event store into the next version:
    window for window what the live one counted through the faults, and both go on."""
    code, out, err = await eddy("projections", "rebuild", STATISTICS)
    assert code == 0, err
    assert f"{REBUILT} (layout" in out and "is live" in out, out
    engine, projections = node.container.engine, node.container.projections.values()
    await eventually(lambda: counted(engine, projections, REBUILT), timeout=60, interval=0.3)
    async with engine.connect() as conn:
        live, rebuilt = (await projected_windows(conn, LIVE),
                         await projected_windows(conn, REBUILT))
    assert rebuilt == live


async def _has(found: Any, member: str) -> bool:
    return member in await found


async def _only(found: Any, member: str) -> bool:
    return await found == {member}


@pytest.mark.parametrize("rounds", [
    pytest.param(1, id="short"),
    pytest.param(4, id="soak", marks=pytest.mark.slow),
])
async def test_statistics_stay_exact_through_kills_restarts_takeovers_and_replay(
        bus: Bus, settings: Settings, postgres: EmbeddedPostgres, workers: Workers,
        rounds: int, request: pytest.FixtureRequest) -> None:
    if bus.name == "kafka" and rounds > 1:
        # Measured (4 runs of 4): the second SIGKILL of the member stalls the group on tansu
        # with S3 storage (the one a broker restart needs): the dead member keeps every
        # partition past its session, its successor is never assigned, console and
        # statistics lags stand still for 60 s. On tansu's memory storage the same 4 kills
        # pass (so does the takeover, in the test after this one). Strict: once tansu
        # expires such a member, this passes and must be unmarked.
        request.applymarker(pytest.mark.xfail(strict=True, reason="tansu S3 storage keeps "
                                              "a SIGKILLed member's partitions"))
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0,
                                          microsecond=0) - timedelta(days=1)
    await asyncio.to_thread(migrate, settings)
    with event_store(postgres, settings.DB_DATABASE) as store:
        traffic = Traffic(store, seed=rounds)
        # a past day, already in the store when the workers start
        clock = iter(yesterday + timedelta(minutes=7 * i, seconds=i) for i in range(10_000))
        await asyncio.to_thread(traffic.turns, 20 * rounds, lambda: next(clock))
        async with running_node(settings, roles=["relay"], migrate_first=False) as node:
            workers.spawn("stat-1")
            turns = 15 * rounds
            await assert_exact(node)
            for _ in range(rounds):
                await kill_mid_window(node, traffic, workers, turns)
            # Kafka's takeover costs seconds per rebalance (the session, then each rejoin): in
            # the slow forms only (and the test after this one); what keeps the stale member
            # from counting twice is the projection's tracking in Postgres, on both buses.
            if bus.name == "redis" or rounds > 1:
                await pause_past_lease(node, traffic, workers, turns)
            await restart_broker(node, traffic, bus, turns)
            await replay_yesterday(node, yesterday)
            await rebuild_equals_live(node)


async def test_a_poison_event_is_parked_and_skipped_and_the_rest_counts_exactly(
        bus: Bus, settings: Settings, postgres: EmbeddedPostgres) -> None:
    now = datetime.now(UTC)
    await asyncio.to_thread(migrate, settings)
    with event_store(postgres, settings.DB_DATABASE) as store:
        traffic = Traffic(store)
        async with running_node(settings, roles=["relay", "projections"],
                                migrate_first=False) as node:
            await asyncio.to_thread(traffic.turns, 10, lambda: now)
            # an answer whose usage the rules cannot read: an older release recorded it
            app = traffic.apps[0]
            poisoned = app.ask("eve", now, None)
            app._record(poisoned.conversation_id, now, lambda c, ctx: c.finish(
                ev.MessageAnswered(message_id=poisoned.message_id, answer="?",
                                   usage={"prompt_tokens": "many"}), ctx))
            poison = store.max_position()
            later = app.ask(poisoned.user, now, usage(1, 2, "0.0000003", 0.5),
                            poisoned.conversation_id)  # held behind it
            app.feedback(later, "like", now)
            held = list(range(poison + 1, store.max_position() + 1))
            await asyncio.to_thread(traffic.turns, 10, lambda: now)  # others go on

            async def parked() -> bool:
                async with node.container.engine.connect() as conn:
                    return bool((await conn.execute(text(
                        "SELECT count(*) FROM projection_parked WHERE projection = :p"
                        " AND position = :position AND resolution IS NULL"),
                        {"p": LIVE, "position": poison})).scalar())

            await eventually(parked, timeout=60, interval=0.3)
            await assert_exact(node, skipped=[poison, *held])

            # the operator gives up on it: what waited behind it is counted
            if bus.name == "redis":
                code, out, _ = await eddy("dlq", "list", "--group", GROUP, "--json")
                [letter] = json_lines(out)
                code, out, err = await eddy("dlq", "drop", letter["topic"], letter["id"],
                                            "--reason", "unreadable usage")
                assert code == 0 and LIVE in out, out + err
            else:  # no `eddy dlq` on Kafka: the same skip, as the library offers it
                container = node.container
                runner = ProjectionRunner(container.read_models.engine_for(
                    container.read_models.active(STATISTICS)),
                    container.projections[STATISTICS], container.store, LIVE)
                [event] = store.read_from(poison - 1, 1)
                assert await runner.skip_parked(event, "unreadable usage")
            await assert_exact(node, skipped=[poison])


@pytest.mark.slow
@pytest.mark.kafka
async def test_statistics_stay_exact_when_a_kafka_member_paused_past_its_session_is_replaced(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """The takeover of the scenario above on Kafka, on a broker of memory storage (no
    restart here): the soak form there stops at tansu's S3 storage first."""
    settings = node_settings(postgres, fresh_database("statpause"), redis_url, kafka_bootstrap,
                             **FAULT_SETTINGS)
    await asyncio.to_thread(migrate, settings)
    workers = Workers(settings, tmp_path)
    try:
        with event_store(postgres, settings.DB_DATABASE) as store:
            traffic = Traffic(store)
            async with running_node(settings, roles=["relay"], migrate_first=False) as node:
                workers.spawn("stat-1")
                async with writing(traffic, 15):
                    pass
                await assert_exact(node)
                await pause_past_lease(node, traffic, workers, 30)
    finally:
        workers.close()
