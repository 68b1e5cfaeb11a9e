"""The workflow engine on the in-memory node (tests/memory.py): published workflows run by
the engine's processor on the memory bus, through the real Service API routes, blocking and
streaming; the events on the run's task stream as Dify's spec has them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from schemas.conversation.naming import task_stream_key
from tests.chat import app_with_key, sse_events
from tests.harness import Node
from tests.spec import validate
from tests.workflows import (
    check_workflow_events,
    edge,
    end_outputs,
    graph,
    graph_node,
    publish,
    text_input,
)
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import Executor, NodeCall, NodeError, NodeResult

GREETING = graph(
    [graph_node("start", "start", variables=[text_input("name"), text_input("mood", False)]),
     graph_node("check", "if-else", cases=[{"case_id": "happy", "logical_operator": "and",
                                      "conditions": [{
                                          "variable_selector": ["start", "mood"],
                                          "comparison_operator": "is", "value": "happy"}]}]),
     graph_node("cheer", "answer", answer="Great to see you, {{#start.name#}}!"),
     graph_node("plain", "answer", answer="Hello {{#start.name#}}."),
     graph_node("end_happy", "end", outputs=end_outputs(("greeting", ["cheer", "answer"]))),
     graph_node("end_plain", "end", outputs=end_outputs(("greeting", ["plain", "answer"])))],
    [edge("start", "check"), edge("check", "cheer", "happy"), edge("check", "plain", "false"),
     edge("cheer", "end_happy"), edge("plain", "end_plain")])


@pytest.fixture
async def auth(node: Node) -> dict[str, str]:
    return await node.setup_and_login()


async def workflow_app(node_: Node, auth: dict[str, str], dsl: dict[str, Any]
                       ) -> tuple[str, dict[str, str]]:
    """A workflow app publishing `dsl`, and its Service API key."""
    app_id, key = await app_with_key(node_, auth, mode="workflow", name="Greeter")
    publish(node_, app_id, dsl)
    return app_id, key


async def run(node_: Node, key: dict[str, str], inputs: dict[str, Any],
              mode: str = "blocking", path: str = "/v1/workflows/run") -> Any:
    return await node_.client.post(path, headers=key, json={
        "inputs": inputs, "user": "ann", "response_mode": mode})


async def test_a_published_workflow_runs_blocking_and_streaming(
        node: Node, auth: dict[str, str]) -> None:
    _, key = await workflow_app(node, auth, GREETING)
    blocking = await run(node, key, {"name": "Ann", "mood": "happy"})
    assert blocking.status_code == 200, blocking.text
    validate("WorkflowBlockingResponse", blocking.json())
    data = blocking.json()["data"]
    assert data["status"] == "succeeded" and data["error"] is None
    assert data["outputs"] == {"greeting": "Great to see you, Ann!"}
    assert data["total_steps"] == 4

    streaming = await run(node, key, {"name": "Bob"}, mode="streaming")
    assert streaming.status_code == 200
    events = [e for _, e in sse_events(streaming.content)]
    check_workflow_events(events)
    assert [(e["event"], e["data"].get("node_id")) for e in events] == [
        ("workflow_started", None),
        ("node_started", "start"), ("node_finished", "start"),
        ("node_started", "check"), ("node_finished", "check"),
        ("node_started", "plain"), ("node_finished", "plain"),
        ("node_started", "end_plain"), ("node_finished", "end_plain"),
        ("workflow_finished", None)]
    assert events[-1]["data"]["outputs"] == {"greeting": "Hello Bob."}
    assert events[4]["data"]["outputs"]["selected_case_id"] == "false"
    assert [e["data"]["index"] for e in events if e["event"] == "node_started"] == [1, 2, 3, 4]


# --- helpers: node executors the tests control (the real ones are other modules') -------


class Gate:
    """An executor that waits until released (or forever), counting its calls."""

    def __init__(self, outputs: dict[str, Any] | None = None) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[NodeCall] = []
        self.outputs = outputs or {"result": "done"}

    async def __call__(self, call: NodeCall) -> NodeResult:
        self.calls.append(call)
        self.entered.set()
        await self.release.wait()
        return NodeResult(outputs=self.outputs)


def through(node_type: str, **data: Any) -> dict[str, Any]:
    """start → `node_type` node `work` → end (outputs: work.result)."""
    return graph([graph_node("start", "start", variables=[]), graph_node("work", node_type, **data),
                  graph_node("end", "end", outputs=end_outputs(("result", ["work", "result"])))],
                 [edge("start", "work"), edge("work", "end")])


@pytest.fixture
def executors(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Executor], None]:
    def register(node_type: str, executor: Executor) -> None:
        monkeypatch.setitem(EXECUTORS, node_type, executor)
    return register


async def events_of(node_: Node, key: dict[str, str], inputs: dict[str, Any]
                    ) -> list[dict[str, Any]]:
    response = await run(node_, key, inputs, mode="streaming")
    assert response.status_code == 200, response.text
    events = [e for _, e in sse_events(response.content)]
    check_workflow_events(events)
    return events


def stored_run(node_: Node, run_id: str) -> list[Any]:
    return node_.container.store.load(UUID(run_id))


# --- the Service API's edges ----------------------------------------------------------------


async def test_inputs_are_checked_against_the_start_node_before_anything_runs(
        node: Node, auth: dict[str, str]) -> None:
    dsl = graph([graph_node("start", "start", variables=[
        text_input("name", max_length=5),
        {"variable": "size", "label": "Size", "type": "select", "required": True,
         "options": ["S", "M"]},
        {"variable": "count", "label": "Count", "type": "number", "required": False}]),
        graph_node("end", "end", outputs=end_outputs(("count", ["start", "count"])))],
        [edge("start", "end")])
    _, key = await workflow_app(node, auth, dsl)
    for inputs, message in [
            ({"size": "S"}, "name is required in input form"),
            ({"name": 5, "size": "S"}, "(type 'text-input') name in input form must be a string"),
            ({"name": "Annabelle", "size": "S"},
             "name in input form must be less than 5 characters"),
            ({"name": "Ann", "size": "XL"},
             "size in input form must be one of the following: ['S', 'M']"),
            ({"name": "Ann", "size": "S", "count": "many"},
             "count in input form must be a valid number")]:
        refused = await run(node, key, inputs)
        assert refused.status_code == 400, refused.text
        assert refused.json() == {"code": "invalid_param", "message": message, "status": 400}
    accepted = await run(node, key, {"name": "Ann", "size": "M", "count": "3"})
    assert accepted.json()["data"]["outputs"] == {"count": 3}


async def test_only_workflow_apps_with_a_published_version_run(
        node: Node, auth: dict[str, str]) -> None:
    _, chat_key = await app_with_key(node, auth, mode="chat")
    refused = await run(node, chat_key, {})
    assert (refused.status_code, refused.json()["code"]) == (400, "not_workflow_app")
    stop = await node.client.post(f"/v1/workflows/tasks/{uuid4()}/stop", headers=chat_key,
                                  json={"user": "ann"})
    assert stop.json()["code"] == "not_workflow_app"

    app_id, key = await app_with_key(node, auth, mode="workflow", name="Unpublished")
    unpublished = await run(node, key, {})
    assert (unpublished.status_code, unpublished.json()["code"]) == (400, "app_unavailable")

    workflow_id = publish(node, app_id, GREETING)
    by_id = await run(node, key, {"name": "Cy"}, path=f"/v1/workflows/{workflow_id}/run")
    assert by_id.json()["data"]["workflow_id"] == str(workflow_id)
    unknown = await run(node, key, {"name": "Cy"}, path=f"/v1/workflows/{uuid4()}/run")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    garbage = await run(node, key, {"name": "Cy"}, path="/v1/workflows/not-an-id/run")
    assert (garbage.status_code, garbage.json()["code"]) == (400, "bad_request")


async def test_a_runs_events_are_read_again_after_last_event_id(
        node: Node, auth: dict[str, str]) -> None:
    _, key = await workflow_app(node, auth, GREETING)
    first = await run(node, key, {"name": "Di"}, mode="streaming")
    ids = [i for i, _ in sse_events(first.content)]
    run_id = sse_events(first.content)[0][1]["workflow_run_id"]
    path = f"/v1/workflow/{run_id}/events"
    again = await node.client.get(path, headers=key, params={"user": "ann"})
    assert [i for i, _ in sse_events(again.content)] == ids
    rest = await node.client.get(path, headers={**key, "Last-Event-ID": ids[3]},
                                 params={"user": "ann"})
    assert [i for i, _ in sse_events(rest.content)] == ids[4:]
    closed = await node.client.get(path, headers={**key, "Last-Event-ID": ids[-1]},
                                   params={"user": "ann"})
    assert [e["event"] for _, e in sse_events(closed.content)] == ["workflow_finished"]
    never = await node.client.get(path, headers={**key, "Last-Event-ID": "1-0"},
                                  params={"user": "ann"})
    assert (never.status_code, never.json()["code"]) == (400, "invalid_param")
    others = await node.client.get(path, headers=key, params={"user": "bob"})
    assert others.status_code == 404

    # the stream expired: the run's end alone, from its history
    task_id = sse_events(first.content)[0][1]["task_id"]
    await node.container.kv.delete(task_stream_key(UUID(task_id)))
    expired = await node.client.get(path, headers=key, params={"user": "ann"})
    events = [e for _, e in sse_events(expired.content)]
    check_workflow_events(events)
    assert [(e["event"], e["data"]["status"]) for e in events] == [
        ("workflow_finished", "succeeded")]
    assert events[0]["data"]["outputs"] == {"greeting": "Hello Di."}


# --- stop, limits, error strategies ---------------------------------------------------------


async def test_a_stop_from_another_request_cancels_the_running_node(
        node: Node, auth: dict[str, str],
        executors: Callable[[str, Executor], None]) -> None:
    gate = Gate()
    executors("code", gate)
    _, key = await workflow_app(node, auth, through("code"))
    running = asyncio.create_task(run(node, key, {}))
    await asyncio.wait_for(gate.entered.wait(), 10)
    task_id = gate.calls[0].run.task_id
    stop = await node.client.post(f"/v1/workflows/tasks/{task_id}/stop", headers=key,
                                  json={"user": "someone-else"})
    assert stop.json() == {"result": "success"}
    answer = (await asyncio.wait_for(running, 10)).json()
    validate("WorkflowBlockingResponse", answer)
    assert answer["data"]["status"] == "stopped"
    history = [e.type for e in stored_run(node, answer["workflow_run_id"])]
    assert history[-1] == "WorkflowRunStopped" and "WorkflowNodeSucceeded" in history
    assert history.count("WorkflowNodeSucceeded") == 1  # the start node's, not the gated one


async def test_a_failing_node_is_retried_as_its_strategy_says(
        node: Node, auth: dict[str, str],
        executors: Callable[[str, Executor], None]) -> None:
    attempts: list[int] = []

    async def flaky(call: NodeCall) -> NodeResult:
        attempts.append(call.attempt)
        if len(attempts) < 3:
            raise NodeError(f"busy ({len(attempts)})", "HTTPResponseCodeError")
        return NodeResult(outputs={"result": "third time"})

    executors("http-request", flaky)
    app_id, key = await workflow_app(node, auth, through("http-request", retry_config={
        "retry_enabled": True, "max_retries": 3, "retry_interval": 10}))
    events = await events_of(node, key, {})
    retries = [e["data"] for e in events if e["event"] == "node_retry"]
    assert [(r["error"], r["retry_index"]) for r in retries] == [("busy (1)", 0),
                                                                ("busy (2)", 1)]
    assert attempts == [0, 1, 2]
    assert events[-1]["data"]["outputs"] == {"result": "third time"}

    attempts.clear()
    publish(node, app_id, through("http-request", retry_config={
        "retry_enabled": True, "max_retries": 1, "retry_interval": 10}))
    exhausted = (await run(node, key, {})).json()
    assert exhausted["data"]["status"] == "failed"
    assert exhausted["data"]["error"] == "node 'work' failed: busy (2)"


async def test_fail_branch_and_default_value_strategies_go_on_after_a_failure(
        node: Node, auth: dict[str, str]) -> None:
    search = {"provider_id": "tavily", "provider_name": "tavily", "tool_name": "search"}
    dsl = graph([
        graph_node("start", "start", variables=[]),
        graph_node("search", "tool", "Search", error_strategy="fail-branch", **search),
        graph_node("found", "answer", answer="found"),
        graph_node("fallback", "answer", answer="fallback: {{#search.error_type#}}"),
        graph_node("lookup", "tool", "Lookup", error_strategy="default-value",
             default_value=[{"key": "text", "type": "string", "value": "n/a"}], **search),
        graph_node("end", "end", outputs=end_outputs(("fallback", ["fallback", "answer"]),
                                               ("text", ["lookup", "text"])))],
        [edge("start", "search"), edge("search", "found"),
         edge("search", "fallback", "fail-branch"), edge("fallback", "lookup"),
         edge("lookup", "end")])
    app_id, key = await workflow_app(node, auth, dsl)
    events = await events_of(node, key, {})
    finished = {e["data"]["node_id"]: e["data"] for e in events if e["event"] == "node_finished"}
    assert "found" not in finished
    assert finished["search"]["status"] == "exception"
    assert "needs a plugin (tavily) that is not installed" in finished["search"]["error"]
    assert finished["lookup"]["outputs"]["text"] == "n/a"
    assert events[-1]["data"]["status"] == "succeeded"
    assert events[-1]["data"]["outputs"] == {"fallback": "fallback: PluginNotInstalled",
                                             "text": "n/a"}

    # without a strategy, the failure ends the run
    plain = graph([graph_node("start", "start", variables=[]),
                   graph_node("search", "tool", "Search", **search),
                   graph_node("end", "end", outputs=[])],
                  [edge("start", "search"), edge("search", "end")])
    publish(node, app_id, plain)
    failed = (await run(node, key, {})).json()["data"]
    assert failed["status"] == "failed"
    assert failed["error"] == ("node 'search' failed: tool node 'Search' needs a plugin "
                               "(tavily) that is not installed")
