"""The workflow engine on the in-memory node (tests/memory.py): published workflows run by
the engine's processor on the memory bus, through the real Service API routes, blocking and
streaming; the events on the run's task stream as Dify's spec has them."""

from __future__ import annotations

from typing import Any

from tests.chat import app_with_key, sse_events
from tests.harness import Node
from tests.spec import validate
from tests.workflows import (
    check_workflow_events,
    edge,
    end_outputs,
    graph,
    node,
    publish,
    text_input,
)

GREETING = graph(
    [node("start", "start", variables=[text_input("name"), text_input("mood", False)]),
     node("check", "if-else", cases=[{"case_id": "happy", "logical_operator": "and",
                                      "conditions": [{
                                          "variable_selector": ["start", "mood"],
                                          "comparison_operator": "is", "value": "happy"}]}]),
     node("cheer", "answer", answer="Great to see you, {{#start.name#}}!"),
     node("plain", "answer", answer="Hello {{#start.name#}}."),
     node("end_happy", "end", outputs=end_outputs(("greeting", ["cheer", "answer"]))),
     node("end_plain", "end", outputs=end_outputs(("greeting", ["plain", "answer"])))],
    [edge("start", "check"), edge("check", "cheer", "happy"), edge("check", "plain", "false"),
     edge("cheer", "end_happy"), edge("plain", "end_plain")])


async def workflow_app(node_: Node, dsl: dict[str, Any]) -> tuple[str, dict[str, str]]:
    auth = await node_.setup_and_login()
    app_id, key = await app_with_key(node_, auth, mode="workflow", name="Greeter")
    publish(node_, app_id, dsl)
    return app_id, key


async def run(node_: Node, key: dict[str, str], inputs: dict[str, Any],
              mode: str = "blocking", path: str = "/v1/workflows/run") -> Any:
    return await node_.client.post(path, headers=key, json={
        "inputs": inputs, "user": "ann", "response_mode": mode})


async def test_a_published_workflow_runs_blocking_and_streaming(node: Node) -> None:
    _, key = await workflow_app(node, GREETING)
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
