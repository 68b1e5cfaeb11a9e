"""The engine member running a workflow dies mid-node (SIGKILL) or stalls past its lease
(SIGSTOP, then SIGCONT while the new owner runs the run): another member folds the run's
history and goes on. Every node finishes once (one result recorded, a finished node never
executed again: only the nodes in flight at the fault run again, with the next attempt),
the client's stream shows each fact once and ends with the run's end, and the stale member,
resumed, executes and writes nothing more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from contexts.workflow import RUNS
from tests.chat import app_with_key
from tests.harness import eventually, node_settings, running_node, served
from tests.workflows import (
    check_workflow_events,
    edge,
    end_outputs,
    graph,
    graph_node,
    publish_in_console,
)

ROOT = Path(__file__).resolve().parents[2]
# start → a → (b ∥ c) → d → end: parallel branches and a join, each step a second long
STEPS = graph(
    [graph_node("start", "start", variables=[]), graph_node("a", "code"),
     graph_node("b", "code"), graph_node("c", "code"), graph_node("d", "code"),
     graph_node("end", "end", outputs=end_outputs(("b", ["b", "result"]),
                                                  ("d", ["d", "result"])))],
    [edge("start", "a"), edge("a", "b"), edge("a", "c"), edge("b", "d"), edge("c", "d"),
     edge("d", "end")])

# (the executions' log, workers so far, events the client received so far, spawn a worker)
Fault = Callable[[Path, list[subprocess.Popen[bytes]], list[dict[str, Any]],
                  Callable[[str], subprocess.Popen[bytes]]], None]


def spawn(env: dict[str, str], member: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.workflow_worker", member], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def started(events: list[dict[str, Any]], node_id: str) -> bool:
    return any(e["event"] == "node_started" and e["data"]["node_id"] == node_id
               for e in events)


def in_flight(log: Path, events: list[dict[str, Any]], *node_ids: str) -> bool:
    """The nodes were started and their executors entered (a step lasts a second: the
    recorded start precedes the executor by a few milliseconds)."""
    if not all(started(events, n) for n in node_ids):
        return False
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        executing = set(log.read_text().splitlines())
        if all(f"{n} 0" in executing for n in node_ids):
            return True
        time.sleep(0.01)
    raise AssertionError(f"{node_ids} started but never executed")


async def test_engine_killed_mid_node_resumes_elsewhere_without_rerunning_finished_nodes(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        tmp_path: Path) -> None:
    def kill(log: Path, workers: list[subprocess.Popen[bytes]], events: list[dict[str, Any]],
             start: Callable[[str], subprocess.Popen[bytes]]) -> None:
        if len(workers) == 1 and in_flight(log, events, "b", "c"):
            workers[0].send_signal(signal.SIGKILL)  # b and c in flight
            workers[0].wait()
            workers.append(start("engine-2"))

    executions = await _run_under_fault(postgres, fresh_database, redis_url, tmp_path, kill)
    assert executions == Counter({"a 0": 1, "b 0": 1, "c 0": 1, "b 1": 1, "c 1": 1, "d 0": 1})


class PauseUntilTakenOver:
    """Stall the member with b and c in flight until the new owner has run d, then resume
    it: it finds the run's message gone to another member before its next effect."""

    def __init__(self) -> None:
        self.resumed = False

    def __call__(self, log: Path, workers: list[subprocess.Popen[bytes]],
                 events: list[dict[str, Any]],
                 start: Callable[[str], subprocess.Popen[bytes]]) -> None:
        if len(workers) == 1 and in_flight(log, events, "b", "c"):
            workers[0].send_signal(signal.SIGSTOP)
            workers.append(start("engine-2"))  # takes the partition once the lease lapses
        if not self.resumed and started(events, "d"):
            workers[0].send_signal(signal.SIGCONT)  # while the new owner runs d
            self.resumed = True


async def test_engine_stalled_past_its_lease_stops_when_resumed(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        tmp_path: Path) -> None:
    pause = PauseUntilTakenOver()
    executions = await _run_under_fault(postgres, fresh_database, redis_url, tmp_path, pause)
    assert pause.resumed
    # b and c were in flight at the stall: the new owner ran them again; nothing else twice
    assert executions == Counter({"a 0": 1, "b 0": 1, "c 0": 1, "b 1": 1, "c 1": 1, "d 0": 1})


async def _run_under_fault(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
                           redis_url: str, tmp_path: Path, fault: Fault) -> Counter[str]:
    """Runs STEPS, the engine in worker processes the fault acts on; returns how often each
    (node, attempt) executed, after checking the run ended once with every node once."""
    settings = node_settings(postgres, fresh_database("wffault"), redis_url)
    log = tmp_path / "executions"
    log.touch()
    async with running_node(settings, roles=["relay", "commands", "projections"]) as node:
        auth = await node.setup_and_login()
        app_id, key = await app_with_key(node, auth, mode="workflow", name="Steps")
        await publish_in_console(node, auth, app_id, STEPS)
        env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING"),
               "EDDY_TEST_EXECUTIONS": str(log), "EDDY_TEST_STEP_SECONDS": "1"}
        workers = [spawn(env, "engine-1")]
        events: list[dict[str, Any]] = []
        try:
            async with served(node.app) as url, httpx.AsyncClient(
                    base_url=url, timeout=120) as http, http.stream(
                    "POST", "/v1/workflows/run", headers=key, json={
                        "inputs": {}, "user": "ann", "response_mode": "streaming"}) as response:
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(orjson.loads(line[len("data: "):]))
                        fault(log, workers, events, lambda member: spawn(env, member))
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGCONT)
                worker.kill()
                worker.wait()
        check_workflow_events(events)
        assert events[-1]["event"] == "workflow_finished"
        assert events[-1]["data"]["status"] == "succeeded"
        assert events[-1]["data"]["outputs"] == {"b": "b", "d": "d"}
        finished = Counter(e["data"]["node_id"] for e in events if e["event"] == "node_finished")
        assert finished == Counter(["start", "a", "b", "c", "d", "end"])
        run_id = events[0]["workflow_run_id"]
        async with node.container.engine.connect() as conn:
            topics = Counter((await conn.execute(text(
                "SELECT topic FROM stored_events WHERE originator_id = :r"),
                {"r": run_id})).scalars())
        assert topics["WorkflowRun:WorkflowNodeSucceeded"] == 6
        assert topics["WorkflowRun:WorkflowRunSucceeded"] == 1

        async def nothing_pending() -> bool:
            state = await node.container.bus.group_state(RUNS.name, [RUNS.name])
            return state.oldest_unacked is None

        await eventually(nothing_pending)
    return Counter(log.read_text().splitlines())
