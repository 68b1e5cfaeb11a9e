"""Many concurrent runs of a published workflow whose nodes call a slow model (the fake
OpenAI server) and a slow HTTP service (a local server counting requests by Idempotency-Key),
while the engine member is killed (SIGKILL, a new member started each time), then stalled
past its lease (SIGSTOP: another member takes over; SIGCONT: the stale one must do nothing
more), then Postgres restarted. Every run ends exactly once, no node whose success was
recorded is ever called again (only a node in flight at a fault repeats, with the same
Idempotency-Key), and nothing is left running or unacknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from config import Settings
from contexts.workflow import RUNS
from schemas.workflow import events as ev
from schemas.workflow.naming import node_idempotency_key
from tests.chat import KEY, MODEL, app_with_key, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node, eventually, node_settings, running_node, served
from tests.local_http import QuietHandler, serving
from tests.workflows import edge, end_outputs, graph, graph_node, publish_in_console

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3.0
MODEL_SECONDS = 0.5
HTTP_SECONDS = 1.0
ENDS = ("WorkflowRun:WorkflowRunSucceeded", "WorkflowRun:WorkflowRunFailed",
        "WorkflowRun:WorkflowRunStopped")


def _llm(node_id: str) -> dict[str, Any]:
    return graph_node(node_id, "llm", model={
        "provider": "openai_api_compatible", "name": MODEL, "mode": "chat",
        "completion_params": {}}, context={"enabled": False},
        prompt_template=[{"role": "user", "text": f"run {{{{#sys.workflow_run_id#}}}} {node_id}"}])


def _http(node_id: str, port: int) -> dict[str, Any]:
    return graph_node(
        node_id, "http-request", method="get",
        url=f"http://127.0.0.1:{port}/step?run={{{{#sys.workflow_run_id#}}}}&node={node_id}",
        authorization={"type": "no-auth"}, headers="", params="",
        body={"type": "none", "data": []}, timeout={"read": 30})


def steps(port: int) -> dict[str, Any]:
    """start → model → http → model → http → end: four slow nodes in a row."""
    return graph(
        [graph_node("start", "start", variables=[]), _llm("m1"), _http("h1", port),
         _llm("m2"), _http("h2", port),
         graph_node("end", "end", outputs=end_outputs(("text", ["m2", "text"]),
                                                      ("status", ["h2", "status_code"])))],
        [edge("start", "m1"), edge("m1", "h1"), edge("h1", "m2"), edge("m2", "h2"),
         edge("h2", "end")])


@dataclass
class Received:
    """What the slow HTTP service was asked: (idempotency key, run, node, arrival time)."""

    requests: list[tuple[str, str, str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def slow_service(received: Received) -> type[QuietHandler]:
    class Slow(QuietHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            with received.lock:
                received.requests.append((self.headers.get("Idempotency-Key", ""),
                                          query["run"][0], query["node"][0], time.time()))
            time.sleep(HTTP_SECONDS)
            # a killed member's call is gone when the answer is ready
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.reply(200, {"Content-Type": "application/json", "Content-Length": "11"},
                           b'{"ok":true}')
    return Slow


@pytest.fixture
def own_postgres(embedded_root: Path) -> Iterator[EmbeddedPostgres]:
    """A Postgres of the test's own, to restart."""
    postgres = EmbeddedPostgres(embedded_root / f"pg-soak-{uuid.uuid4().hex[:6]}")
    postgres.start()
    try:
        yield postgres
    finally:
        postgres.stop()


class Members:
    """The engine's member processes (`eddy worker --roles workflow.runs`)."""

    def __init__(self, settings: Settings) -> None:
        self.env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
        self.all: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        member = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--roles", RUNS.name,
             "--member", f"engine-{len(self.all) + 1}"],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.all.append(member)
        return member

    def stop_all(self) -> None:
        for member in self.all:
            with contextlib.suppress(ProcessLookupError):
                member.send_signal(signal.SIGCONT)
                member.kill()
            member.wait()


async def _topics(node: Node) -> list[tuple[UUID, str]]:
    async with node.container.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT originator_id, topic FROM stored_events WHERE topic LIKE 'WorkflowRun:%'"))
        return [(r[0], r[1]) for r in rows]


async def _progress(node: Node) -> tuple[int, int]:
    """(nodes succeeded, runs ended) so far, by the event store; (-1, -1) while it is down."""
    try:
        topics = Counter(t for _, t in await _topics(node))
    except Exception:  # Postgres restarting: no reading yet
        return -1, -1
    return topics["WorkflowRun:WorkflowNodeSucceeded"], sum(topics[e] for e in ENDS)


async def _after_progress(node: Node, runs: int, nodes: int = 2) -> None:
    """Wait until `nodes` more nodes have succeeded, then check runs are still in flight
    (so the fault that follows hits work in progress)."""
    before, _ = await _progress(node)

    async def advanced() -> bool:
        done, _ = await _progress(node)
        return done >= before + nodes

    await eventually(advanced, timeout=60, interval=0.1)
    _, ended = await _progress(node)
    assert ended < runs, "every run ended before the fault: nothing was in flight"


async def soak(own_postgres: EmbeddedPostgres, redis_url: str, *, runs: int, kills: int,
               concurrency: int) -> None:
    database = f"soak_{uuid.uuid4().hex[:8]}"
    own_postgres.create_database(database)
    settings = node_settings(own_postgres, database, redis_url,
                             REDIS_BUS_LEASE_SECONDS=LEASE_SECONDS,
                             WORKFLOW_CONCURRENCY=concurrency, SSRF_ALLOWED_HOSTS="127.0.0.1",
                             COMMAND_TIMEOUT_SECONDS=10, PROJECTION_WAIT_SECONDS=10)
    received = Received()
    members = Members(settings)
    faults: list[float] = []
    with FakeOpenAIServer(api_key=KEY, models={MODEL}) as provider, \
            serving(slow_service(received)) as port:
        async with running_node(settings, roles=["relay", "commands", "projections"]) as node:
            auth = await node.setup_and_login()
            await connect_provider(node, auth, provider)
            app_id, key = await app_with_key(node, auth, mode="workflow", name="Soak")
            await publish_in_console(node, auth, app_id, steps(port))
            provider.reset()
            provider.delay_next(MODEL_SECONDS, count=100_000)
            current = members.start()
            try:
                async with served(node.app) as url, httpx.AsyncClient(
                        base_url=url, timeout=300) as http:
                    async def run() -> None:
                        # the client's stream may break while Postgres restarts: the event
                        # store is what is checked
                        with contextlib.suppress(httpx.HTTPError):
                            async with http.stream("POST", "/v1/workflows/run", headers=key,
                                                   json={"inputs": {}, "user": "ann",
                                                         "response_mode": "streaming"}) as r:
                                assert r.status_code == 200, await r.aread()
                                async for _ in r.aiter_bytes():
                                    pass

                    clients = [asyncio.create_task(run()) for _ in range(runs)]
                    for _ in range(kills):
                        await _after_progress(node, runs)
                        faults.append(time.time())
                        current.send_signal(signal.SIGKILL)
                        current.wait()
                        current = members.start()
                    await _after_progress(node, runs)
                    stalled = current
                    faults.append(time.time())
                    stalled.send_signal(signal.SIGSTOP)
                    current = members.start()  # takes the partitions once the lease lapses
                    await _after_progress(node, runs)  # the new owner runs the stalled runs
                    stalled.send_signal(signal.SIGCONT)
                    await _after_progress(node, runs, nodes=1)
                    faults.append(time.time())
                    await asyncio.to_thread(own_postgres.stop)
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(own_postgres.start)

                    async def all_ended() -> bool:
                        try:
                            topics = await _topics(node)
                        except Exception:  # Postgres still restarting
                            return False
                        ended = {r for r, t in topics if t in ENDS}
                        begun = {r for r, t in topics if t == "WorkflowRun:WorkflowRunStarted"}
                        return len(begun) == runs and ended == begun

                    await eventually(all_ended, timeout=240, interval=0.5)
                    await asyncio.wait_for(asyncio.gather(*clients), timeout=60)
                    await _check(node, received, provider, runs, faults)
            finally:
                members.stop_all()


def _never_after_a_fault_past_its_end(asked_at: float, succeeded_at: float,
                                      faults: list[float]) -> None:
    """A node whose success was recorded before a fault is not asked again after it. (A
    member stalled with the node's call under way sends it when resumed, with the same
    Idempotency-Key, even if the new owner recorded the node's success meanwhile: allowed.)"""
    for fault in faults:
        assert not succeeded_at < fault < asked_at, "a finished node ran again after a fault"


async def _check(node: Node, received: Received, provider: FakeOpenAIServer, runs: int,
                 faults: list[float]) -> None:
    """`faults`: when each (kill, stall, Postgres restart) began."""
    topics = await _topics(node)
    run_ids = {r for r, t in topics if t == "WorkflowRun:WorkflowRunStarted"}
    assert len(run_ids) == runs
    ends = Counter(r for r, t in topics if t in ENDS)
    assert ends == Counter(run_ids), "a run ended other than exactly once"
    outcome = Counter(t for _, t in topics if t in ENDS)
    assert outcome == Counter({"WorkflowRun:WorkflowRunSucceeded": runs}), outcome
    # when each node's success was recorded; a node succeeds once per run
    succeeded: dict[tuple[str, str], float] = {}
    for run_id in run_ids:
        for envelope in node.container.store.load(run_id):
            if isinstance(envelope.payload, ev.WorkflowNodeSucceeded):
                place = (str(run_id), envelope.payload.node_id)
                assert place not in succeeded, f"{place} succeeded twice"
                succeeded[place] = envelope.occurred_at.timestamp()
    assert len(succeeded) == runs * 6
    # the HTTP service: one key per (run, node), never asked again once the node's success
    # was recorded, at most once more per fault (the node was in flight)
    keys: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for key, run_id, node_id, at in received.requests:
        keys[key].add((run_id, node_id))
        assert key == node_idempotency_key(UUID(run_id), node_id)
        _never_after_a_fault_past_its_end(at, succeeded[(run_id, node_id)], faults)
    assert all(len(places) == 1 for places in keys.values())
    per_key = Counter(key for key, *_ in received.requests)
    assert len(per_key) == runs * 2
    assert max(per_key.values()) <= len(faults) + 1, per_key.most_common(3)
    # the model: the same, by the run and node its prompt names
    asked: Counter[tuple[str, str]] = Counter()
    wall = time.time() - time.monotonic()  # the fake records monotonic arrival times
    for request in provider.chat_requests:
        _, run_id, node_id = request.body["messages"][-1]["content"].split()
        asked[(run_id, node_id)] += 1
        _never_after_a_fault_past_its_end(request.at + wall, succeeded[(run_id, node_id)],
                                          faults)
    assert len(asked) == runs * 2
    assert max(asked.values()) <= len(faults) + 1, asked.most_common(3)

    async def nothing_pending() -> bool:
        state = await node.container.bus.group_state(RUNS.name, [RUNS.name])
        return state.oldest_unacked is None

    await eventually(nothing_pending, timeout=30)


async def test_concurrent_runs_end_once_through_a_kill_a_stall_and_a_postgres_restart(
        own_postgres: EmbeddedPostgres, redis_url: str) -> None:
    await soak(own_postgres, redis_url, runs=6, kills=1, concurrency=3)


@pytest.mark.slow
async def test_thirty_runs_end_once_through_three_kills_a_stall_and_a_postgres_restart(
        own_postgres: EmbeddedPostgres, redis_url: str) -> None:
    await soak(own_postgres, redis_url, runs=30, kills=3, concurrency=8)
