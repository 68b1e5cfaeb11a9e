"""Workflow runs over real HTTP on Postgres and Redis: a published workflow run blocking and
streaming (every event as Dify's spec has it), stopped mid-node from another request, and
driven by dify-client-python (unmodified, in its own process): run blocking, streaming, and
stop; error strategies (retry, fail branch, default value) and the step and time limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.chat import app_with_key, sse_events
from tests.clients import run_dify_client_python
from tests.harness import Node, served
from tests.spec import validate
from tests.workflows import (
    Gate,
    check_workflow_events,
    edge,
    end_outputs,
    executors_on,
    graph,
    graph_node,
    publish_in_console,
    text_input,
)
from workers.workflow.nodes.base import Executor, NodeCall, NodeError, NodeResult

# start → if-else → one of two answers → its end; then a slow node on the other path
BRANCHES = graph(
    [graph_node("start", "start", variables=[text_input("name"),
                                             text_input("mood", required=False)]),
     graph_node("check", "if-else", cases=[{
         "case_id": "happy", "logical_operator": "and", "conditions": [{
             "variable_selector": ["start", "mood"], "comparison_operator": "is",
             "value": "happy"}]}]),
     graph_node("cheer", "answer", answer="Great to see you, {{#start.name#}}!"),
     graph_node("slow", "code", "Slow step"),
     graph_node("end", "end", outputs=end_outputs(("greeting", ["cheer", "answer"]))),
     graph_node("end_slow", "end", outputs=end_outputs(("result", ["slow", "result"])))],
    [edge("start", "check"), edge("check", "cheer", "happy"), edge("check", "slow", "false"),
     edge("cheer", "end"), edge("slow", "end_slow")])


@pytest.fixture
def executors(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Executor], None]:
    return executors_on(monkeypatch)


async def workflow_key(node: Node) -> dict[str, str]:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Greeter")
    await publish_in_console(node, auth, app_id, BRANCHES)
    return key


async def test_runs_blocking_streaming_and_stopped_over_http(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    gate = Gate()
    executors("code", gate)
    key = await workflow_key(node)
    async with served(node.app) as url, httpx.AsyncClient(base_url=url, timeout=15) as http:
        blocking = await http.post("/v1/workflows/run", headers=key, json={
            "inputs": {"name": "Ann", "mood": "happy"}, "user": "ann",
            "response_mode": "blocking"})
        assert blocking.status_code == 200, blocking.text
        validate("WorkflowBlockingResponse", blocking.json())
        assert blocking.json()["data"]["outputs"] == {"greeting": "Great to see you, Ann!"}

        streamed = await http.post("/v1/workflows/run", headers=key, json={
            "inputs": {"name": "Bo", "mood": "happy"}, "user": "ann",
            "response_mode": "streaming"})
        events = [e for _, e in sse_events(streamed.content)]
        check_workflow_events(events)
        assert [e["event"] for e in events][-1] == "workflow_finished"
        assert events[-1]["data"]["outputs"] == {"greeting": "Great to see you, Bo!"}

        seen: list[dict[str, Any]] = []
        async with http.stream("POST", "/v1/workflows/run", headers=key, json={
                "inputs": {"name": "Cy"}, "user": "ann",
                "response_mode": "streaming"}) as live:
            buffer = b""
            async for piece in live.aiter_bytes():
                buffer += piece
                blocks, _, buffer = buffer.rpartition(b"\n\n")
                for _, event in sse_events(blocks):
                    seen.append(event)
                    if event["event"] == "node_started" and event["data"]["node_id"] == "slow":
                        await gate.entered.wait()
                        stop = await http.post(
                            f"/v1/workflows/tasks/{event['task_id']}/stop", headers=key,
                            json={"user": "another-user"})
                        assert stop.json() == {"result": "success"}
    check_workflow_events(seen)
    assert seen[-1]["event"] == "workflow_finished"
    assert seen[-1]["data"]["status"] == "stopped"
    assert not any(e["event"] == "node_finished" and e["data"]["node_id"] == "slow"
                   for e in seen)


async def test_dify_client_python_runs_and_stops_a_workflow(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    executors("code", Gate())
    key = await workflow_key(node)
    async with served(node.app) as url:
        result = await run_dify_client_python("""
            from dify_client import Client, models
            client = Client(api_key=API_KEY, api_base=BASE_URL + "/v1")
            blocking = client.run_workflows(models.WorkflowsRunRequest(
                inputs={"name": "Ann", "mood": "happy"}, response_mode="blocking", user="ann"))
            streamed = [e.event for e in client.run_workflows(models.WorkflowsRunRequest(
                inputs={"name": "Bo", "mood": "happy"}, response_mode="streaming",
                user="ann"))]
            stopped = None
            for e in client.run_workflows(models.WorkflowsRunRequest(
                    inputs={"name": "Cy"}, response_mode="streaming", user="ann")):
                # the SDK's union parses event data as a plain dict
                data = e.data if isinstance(e.data, dict) else e.data.model_dump()
                if e.event == "node_started" and data["node_id"] == "slow":
                    client.stop_workflows(e.task_id, models.StopRequest(user="ann"))
                if e.event == "workflow_finished":
                    stopped = data["status"]
            emit({"status": blocking.data.status, "outputs": blocking.data.outputs,
                  "streamed": streamed, "stopped": stopped})
        """, base_url=url, api_key=key["Authorization"].removeprefix("Bearer "))
    assert result["status"] == "succeeded"
    assert result["outputs"] == {"greeting": "Great to see you, Ann!"}
    assert result["streamed"][0] == "workflow_started"
    assert result["streamed"][-1] == "workflow_finished"
    assert result["stopped"] == "stopped"


async def test_a_blocking_answer_and_its_events_read_again_agree(node: Node) -> None:
    """A blocking run is answered from the run's stream, never from a read model: the
    answer and the stream agree, and the events can be read again by the run's user."""
    key = await workflow_key(node)
    answer = (await node.client.post("/v1/workflows/run", headers=key, json={
        "inputs": {"name": "Di", "mood": "happy"}, "user": "ann",
        "response_mode": "blocking"})).json()
    again = await asyncio.wait_for(node.client.get(
        f"/v1/workflow/{answer['workflow_run_id']}/events", headers=key,
        params={"user": "ann"}), timeout=15)
    events = [e for _, e in sse_events(again.content)]
    check_workflow_events(events)
    assert events[-1]["data"]["outputs"] == answer["data"]["outputs"]
    assert events[-1]["data"]["elapsed_time"] == answer["data"]["elapsed_time"]


SEARCH = {"provider_id": "tavily", "provider_name": "tavily", "tool_name": "search"}
# a flaky step retried, a tool without its plugin on a fail branch, another with a default
STRATEGIES = graph(
    [graph_node("start", "start", variables=[]),
     graph_node("fetch", "http-request", "Fetch", retry_config={
         "retry_enabled": True, "max_retries": 2, "retry_interval": 50}),
     graph_node("search", "tool", "Search", error_strategy="fail-branch", **SEARCH),
     graph_node("found", "answer", answer="found"),
     graph_node("fallback", "answer", answer="fallback ({{#search.error_type#}})"),
     graph_node("lookup", "tool", "Lookup", error_strategy="default-value",
                default_value=[{"key": "text", "type": "string", "value": "n/a"}], **SEARCH),
     graph_node("end", "end", outputs=end_outputs(
         ("fetched", ["fetch", "result"]), ("fallback", ["fallback", "answer"]),
         ("text", ["lookup", "text"])))],
    [edge("start", "fetch"), edge("fetch", "search"), edge("search", "found"),
     edge("search", "fallback", "fail-branch"), edge("fallback", "lookup"),
     edge("lookup", "end")])


@pytest.mark.settings(WORKFLOW_MAX_EXECUTION_STEPS=6, WORKFLOW_MAX_EXECUTION_TIME=2)
async def test_error_strategies_and_limits_over_http(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    attempts: list[int] = []

    async def flaky(call: NodeCall) -> NodeResult:
        attempts.append(call.attempt)
        if len(attempts) == 1:
            raise NodeError("503 from upstream", "HTTPResponseCodeError")
        return NodeResult(outputs={"result": "fetched"})

    executors("http-request", flaky)
    gate = Gate()
    executors("code", gate)
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Strategies")
    await publish_in_console(node, auth, app_id, STRATEGIES)
    async with served(node.app) as url, httpx.AsyncClient(base_url=url, timeout=15) as http:
        async def run(mode: str) -> httpx.Response:
            return await http.post("/v1/workflows/run", headers=key, json={
                "inputs": {}, "user": "ann", "response_mode": mode})

        events = [e for _, e in sse_events((await run("streaming")).content)]
        check_workflow_events(events)
        assert [e["data"]["retry_index"] for e in events if e["event"] == "node_retry"] == [0]
        statuses = {e["data"]["node_id"]: e["data"]["status"] for e in events
                    if e["event"] == "node_finished"}
        assert statuses == {"start": "succeeded", "fetch": "succeeded",
                            "search": "exception", "fallback": "succeeded",
                            "lookup": "exception", "end": "succeeded"}
        assert events[-1]["data"]["outputs"] == {
            "fetched": "fetched", "fallback": "fallback (PluginNotInstalled)", "text": "n/a"}

        await publish_in_console(node, auth, app_id, graph(  # 7 steps: one too many
            [graph_node("start", "start", variables=[]),
             *(graph_node(f"say{i}", "answer", answer=str(i)) for i in range(5)),
             graph_node("end", "end", outputs=[])],
            [edge("start", "say0"), *(edge(f"say{i}", f"say{i + 1}") for i in range(4)),
             edge("say4", "end")]))
        too_long = (await run("blocking")).json()["data"]
        assert (too_long["status"], too_long["error"]) == ("failed", "Max steps 6 reached.")

        await publish_in_console(node, auth, app_id, BRANCHES)  # its code node never ends
        too_slow = (await http.post("/v1/workflows/run", headers=key, json={
            "inputs": {"name": "Eve"}, "user": "ann", "response_mode": "blocking"})).json()
        assert (too_slow["data"]["status"], too_slow["data"]["error"]) == (
            "failed", "Max execution time 2s reached.")
        assert len(gate.calls) == 1


@pytest.mark.settings(TASK_STREAM_TTL_SECONDS=10)
async def test_a_node_outlasting_the_streams_ttl_keeps_the_run_streaming(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    """A task stream (and its writer's claim) expires TASK_STREAM_TTL_SECONDS after its last
    write: a node running longer without a word must not cost the run its stream."""
    gate = Gate({"result": "late"})
    executors("code", gate)
    key = await workflow_key(node)
    asyncio.get_running_loop().call_later(12, gate.release.set)
    answer = (await node.client.post("/v1/workflows/run", headers=key, json={
        "inputs": {"name": "Slow"}, "user": "ann", "response_mode": "blocking"})).json()
    assert answer["data"]["status"] == "succeeded"
    assert answer["data"]["outputs"] == {"result": "late"}
    again = await node.client.get(f"/v1/workflow/{answer['workflow_run_id']}/events",
                                  headers=key, params={"user": "ann"})
    kinds = [e["event"] for _, e in sse_events(again.content)]  # the whole stream, kept
    assert (kinds[0], kinds[-1], len(kinds)) == ("workflow_started", "workflow_finished", 10)
