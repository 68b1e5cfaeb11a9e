"""An iteration workflow run by the engine on the in-memory node, through the Service API:
the container's body runs per item and its events reach the run's stream as Dify's spec has
them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from argon2 import PasswordHasher

from gateway import auth as gateway_auth
from schemas.workflow import events as ev
from schemas.workflow.naming import node_execution_id, node_idempotency_key
from tests.chat import app_with_key, sse_events
from tests.harness import Node
from tests.memory import memory_app
from tests.unit.test_workflow_engine import record, started_run, stream_of
from tests.workflows import (
    check_workflow_events,
    edge,
    end_outputs,
    executors_on,
    graph,
    graph_node,
    publish,
    text_input,
)
from workers.workflow.nodes.base import NodeCall, NodeResult


def in_iteration(node: dict[str, Any], iteration_id: str) -> dict[str, Any]:
    """A body node as Dify's editor writes it."""
    return {**node, "parentId": iteration_id,
            "data": {**node["data"], "iteration_id": iteration_id, "isInIteration": True}}


SHOUT = graph(
    [graph_node("start", "start", variables=[text_input("words")]),
     graph_node("split", "code"),
     graph_node("it", "iteration", iterator_selector=["split", "items"],
                output_selector=["up", "result"], start_node_id="it-start",
                is_parallel=True, parallel_nums=2, error_handle_mode="terminated"),
     in_iteration(graph_node("it-start", "iteration-start"), "it"),
     in_iteration(graph_node("up", "code"), "it"),
     graph_node("end", "end", outputs=end_outputs(("shouted", ["it", "output"])))],
    [edge("start", "split"), edge("split", "it"), edge("it", "end"), edge("it-start", "up")])


@pytest.fixture
def code_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """`split` splits the input on commas, `up` upper-cases the iteration's item."""
    async def code(call: NodeCall) -> NodeResult:
        if call.node.id == "split":
            return NodeResult(outputs={"items": str(call.pool.get(["start", "words"]))
                                       .split(",")})
        return NodeResult(outputs={"result": str(call.pool.get(["it", "item"])).upper()})

    executors_on(monkeypatch)("code", code)


@pytest.mark.usefixtures("code_nodes")
async def test_an_iteration_workflow_runs_and_streams_its_steps(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Shouter")
    publish(node, app_id, SHOUT)
    body = {"inputs": {"words": "a,b,c"}, "user": "ann"}

    blocking = await node.client.post("/v1/workflows/run", headers=key,
                                      json={**body, "response_mode": "blocking"})
    assert blocking.status_code == 200, blocking.text
    assert blocking.json()["data"]["outputs"] == {"shouted": ["A", "B", "C"]}

    streaming = await node.client.post("/v1/workflows/run", headers=key,
                                       json={**body, "response_mode": "streaming"})
    events = [e for _, e in sse_events(streaming.content)]
    check_workflow_events(events)
    names = [e["event"] for e in events]
    assert names.count("iteration_next") == 3
    assert names.index("iteration_started") < names.index("iteration_completed")
    body_finished = [e["data"] for e in events if e["event"] == "node_finished"
                     and e["data"]["node_id"] == "up"]
    assert sorted((e["execution_metadata"]["iteration_index"], e["outputs"]["result"])
                  for e in body_finished) == [(0, "A"), (1, "B"), (2, "C")]
    assert all(e["iteration_id"] == "it" for e in body_finished)
    container = next(e["data"] for e in events
                     if e["event"] == "node_started" and e["data"]["node_id"] == "it")
    completed = next(e["data"] for e in events if e["event"] == "iteration_completed")
    assert completed["id"] == container["id"]  # one execution of the container
    assert completed["outputs"] == {"output": ["A", "B", "C"]}
    assert events[-1]["event"] == "workflow_finished"
    assert events[-1]["data"]["outputs"] == {"shouted": ["A", "B", "C"]}


@pytest.fixture
async def five_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    """A node whose runs may take 5 steps."""
    monkeypatch.setattr(gateway_auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                                parallelism=1))
    async with memory_app(tmp_path, WORKFLOW_MAX_EXECUTION_STEPS=5) as n:
        yield n


@pytest.mark.usefixtures("code_nodes")
async def test_body_steps_count_against_the_runs_steps(five_steps: Node) -> None:
    """start, split and it take 3 of the 5 steps; two items' bodies take 4 more."""
    auth = await five_steps.setup_and_login()
    app_id, key = await app_with_key(five_steps, auth, mode="workflow", name="Shouter")
    publish(five_steps, app_id, SHOUT)
    answer = await five_steps.client.post("/v1/workflows/run", headers=key, json={
        "inputs": {"words": "a,b"}, "user": "ann", "response_mode": "blocking"})
    data = answer.json()["data"]
    assert data["status"] == "failed" and "Max steps 5 reached." in data["error"]


async def test_a_run_taken_over_mid_iteration_reruns_only_the_body_node_in_flight(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member died with item 0's pass recorded and item 1's `up` in flight: the next
    member replays item 0, reruns item 1's `up` (same idempotency key) and runs item 2."""
    shouted: list[tuple[str, str]] = []

    async def code(call: NodeCall) -> NodeResult:
        assert call.node.id == "up"  # split finished before the member died
        item = str(call.pool.get(["it", "item"]))
        shouted.append((item, call.idempotency_key))
        return NodeResult(outputs={"result": item.upper()})

    executors_on(monkeypatch)("code", code)
    auth = await node.setup_and_login()
    app_id, _ = await app_with_key(node, auth, mode="workflow", name="Shouter")
    workflow_id = publish(node, app_id, SHOUT)
    run_id, task_id = uuid4(), uuid4()

    def started(node_id: str, node_type: str, index: int) -> ev.WorkflowNodeStarted:
        return ev.WorkflowNodeStarted(node_id=node_id, node_type=node_type, title=node_id,
                                      execution_id=node_execution_id(run_id, node_id),
                                      index=index)

    record(node, app_id, run_id,
           started_run(app_id, workflow_id, run_id, task_id, inputs={"words": "a,b,c"}),
           started("start", "start", 1),
           ev.WorkflowNodeSucceeded(node_id="start", outputs={"words": "a,b,c"},
                                    execution_id=node_execution_id(run_id, "start")),
           started("split", "code", 2),
           ev.WorkflowNodeSucceeded(node_id="split", outputs={"items": ["a", "b", "c"]},
                                    execution_id=node_execution_id(run_id, "split")),
           started("it", "iteration", 3),
           # item 0's pass recorded, item 1's `up` in flight when the member died
           *(ev.WorkflowBodyNodeRecorded(scope=scope, kind=kind, node_id=node_id,
                                         outputs=outputs)
             for scope, kind, node_id, outputs in [
                 ("/it[0]", "started", "it-start", {}), ("/it[0]", "succeeded", "it-start", {}),
                 ("/it[0]", "started", "up", {}),
                 ("/it[0]", "succeeded", "up", {"result": "A"}),
                 ("/it[1]", "started", "it-start", {}), ("/it[1]", "succeeded", "it-start", {}),
                 ("/it[1]", "started", "up", {})]))
    events = await stream_of(node, task_id)
    assert events[-1]["data"]["outputs"] == {"shouted": ["A", "B", "C"]}
    assert sorted(shouted) == [("b", node_idempotency_key(run_id, "up", "/it[1]")),
                               ("c", node_idempotency_key(run_id, "up", "/it[2]"))]
