"""Real runs read back over real HTTP on Postgres and Redis: a published workflow run by the
engine (blocking and streaming), then its detail and logs on the Service API (as Dify's spec
has them, agreeing with what the run answered) and its history and node executions on the
console (agreeing with the streamed node events); a run calling the model (the fake
OpenAI-protocol server) shows its tokens, and `eddy events replay` of it reaches the read
model again but never the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from contexts.workflow import RUNS
from projections.tables import PROJECTION_NAME
from tests.chat import KEY, MODEL, app_with_key, connect_provider, sse_events
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat
from tests.harness import Node, eventually, served
from tests.integration.conftest import operator_env
from tests.integration.test_cli_operations import eddy, json_lines
from tests.integration.test_replay import replayed
from tests.spec import validate
from tests.workflows import (
    Gate,
    check_workflow_events,
    edge,
    end_outputs,
    executors_on,
    graph,
    graph_node,
    publish,
    text_input,
)
from workers.workflow.nodes.base import Executor

# start → check (if-else) → a code step (the test's executor) → end; or → a plain answer
FLOW = graph(
    [graph_node("start", "start", variables=[text_input("name")]),
     graph_node("check", "if-else", cases=[{
         "case_id": "named", "logical_operator": "and", "conditions": [{
             "variable_selector": ["start", "name"], "comparison_operator": "not empty",
             "value": ""}]}]),
     graph_node("step", "code", "Step"),
     graph_node("plain", "answer", answer="nobody"),
     graph_node("end", "end", outputs=end_outputs(("result", ["step", "result"])))],
    [edge("start", "check"), edge("check", "step", "named"), edge("check", "plain", "false"),
     edge("step", "end")])


@pytest.fixture
def executors(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Executor], None]:
    return executors_on(monkeypatch)


async def _ended(http: httpx.AsyncClient, key: dict[str, str], run_id: str) -> bool:
    detail = await http.get(f"/v1/workflows/run/{run_id}", headers=key)
    return detail.status_code == 200 and detail.json()["status"] != "running"


async def test_a_real_runs_detail_logs_and_node_executions_read_back(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    step = Gate(outputs={"result": "computed"})
    step.release.set()
    executors("code", step)
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Runner")
    workflow_id = publish(node, app_id, FLOW)
    async with served(node.app) as url, httpx.AsyncClient(base_url=url, timeout=15) as http:
        blocking = await http.post("/v1/workflows/run", headers=key, json={
            "inputs": {"name": "Ann"}, "user": "ann", "response_mode": "blocking"})
        assert blocking.status_code == 200, blocking.text
        answered = blocking.json()["data"]
        streamed = await http.post("/v1/workflows/run", headers=key, json={
            "inputs": {"name": "Bo"}, "user": "bob", "response_mode": "streaming"})
        events = [e for _, e in sse_events(streamed.content)]
        check_workflow_events(events)
        bob_run = events[0]["workflow_run_id"]
        for run_id in (answered["id"], bob_run):
            await eventually(lambda run_id=run_id: _ended(http, key, run_id))

        # the run's detail is what the run answered
        detail = (await http.get(f"/v1/workflows/run/{answered['id']}", headers=key)).json()
        validate("WorkflowRunDetailResponse", detail)
        same = ("id", "workflow_id", "status", "outputs", "error", "total_steps",
                "total_tokens", "created_at")
        assert {k: detail[k] for k in same} == {k: answered[k] for k in same}
        assert detail["workflow_id"] == str(workflow_id)
        assert detail["inputs"] == '{"name": "Ann"}'
        assert detail["outputs"] == {"result": "computed"} and detail["finished_at"]

        # the logs list both, newest first, with their end users
        logs = (await http.get("/v1/workflows/logs", headers=key)).json()
        validate("WorkflowLogsResponse", logs)
        assert [(e["workflow_run"]["id"], e["created_by_end_user"]["session_id"],
                 e["workflow_run"]["status"]) for e in logs["data"]] == [
            (bob_run, "bob", "succeeded"), (answered["id"], "ann", "succeeded")]
        bobs = (await http.get("/v1/workflows/logs", headers=key,
                               params={"created_by_end_user_session_id": "bob"})).json()
        assert [e["workflow_run"]["id"] for e in bobs["data"]] == [bob_run]

        # the console's node executions are the streamed node_finished events
        console = f"/console/api/apps/{app_id}"
        listed = (await http.get(f"{console}/workflow-runs", headers=auth,
                                 params={"triggered_from": "app-run"})).json()
        assert [r["id"] for r in listed["data"]] == [bob_run, answered["id"]]
        executions = (await http.get(f"{console}/workflow-runs/{bob_run}/node-executions",
                                     headers=auth)).json()["data"]
        finished = [e["data"] for e in events if e["event"] == "node_finished"]
        assert [_node(x) for x in executions] == [_node(x) for x in reversed(finished)]
        assert [x["node_id"] for x in executions] == ["end", "step", "check", "start"]
        run = (await http.get(f"{console}/workflow-runs/{bob_run}", headers=auth)).json()
        assert (run["status"], run["outputs"], run["created_by_end_user"]["session_id"],
                run["graph"]) == ("succeeded", {"result": "computed"}, "bob", FLOW)
    assert len(step.calls) == 2


def _node(execution: dict[str, Any]) -> tuple[Any, ...]:
    return (execution["id"], execution["node_id"], execution["node_type"], execution["index"],
            execution["status"], execution["outputs"])


ASK = graph(
    [graph_node("start", "start", variables=[text_input("question")]),
     graph_node("llm", "llm", "Ask", model={
         "provider": "openai_api_compatible", "name": MODEL, "mode": "chat",
         "completion_params": {}}, prompt_template=[
         {"role": "user", "text": "{{#start.question#}}"}], context={"enabled": False}),
     graph_node("end", "end", outputs=end_outputs(("answer", ["llm", "text"])))],
    [edge("start", "llm"), edge("llm", "end")])


async def test_a_model_calling_run_read_back_and_replayed_never_calls_the_model_again(
        node: Node, provider: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    provider.reset()
    operator_env(monkeypatch, node.container.settings)  # where `eddy` finds this node
    auth = await node.setup_and_login()
    await connect_provider(node, auth, provider)
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Asker")
    publish(node, app_id, ASK)
    provider.script_chat(ScriptedChat("Nine to five.", usage={
        "prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}))
    answer = await node.client.post("/v1/workflows/run", headers=key, json={
        "inputs": {"question": "Opening hours?"}, "user": "ann",
        "response_mode": "blocking"})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["workflow_run_id"]
    await eventually(lambda: _ended(node.client, key, run_id))
    detail = (await node.client.get(f"/v1/workflows/run/{run_id}", headers=key)).json()
    validate("WorkflowRunDetailResponse", detail)
    assert (detail["outputs"], detail["total_tokens"]) == ({"answer": "Nine to five."}, 16)
    console = f"/console/api/apps/{app_id}/workflow-runs/{run_id}/node-executions"
    executions = (await node.client.get(console, headers=auth)).json()["data"]
    llm = next(x for x in executions if x["node_id"] == "llm")
    assert llm["execution_metadata"]["total_tokens"] == 16 and llm["outputs"]["text"] == \
        "Nine to five."
    calls, before = len(provider.chat_requests), executions

    # to every group (the engine's acknowledges without acting), then to the engine's alone
    projection = f"projection.{PROJECTION_NAME}"
    skipped, handled = replayed(RUNS.name, "skipped"), replayed(projection, "handled")
    code, out, err = await eddy("events", "replay", "--aggregate", run_id, "--republish",
                                "--json")
    assert code == 0, err
    events = json_lines(out)[-1]["events"]
    code, _, err = await eddy("events", "replay", "--aggregate", run_id, "--group", RUNS.name)
    assert code == 0, err

    async def delivered() -> bool:
        return replayed(RUNS.name, "skipped") >= skipped + 2 and \
            replayed(projection, "handled") >= handled + events
    await eventually(delivered)
    assert len(provider.chat_requests) == calls  # the model was not asked again
    assert (await node.client.get(console, headers=auth)).json()["data"] == before


async def test_the_next_run_goes_where_the_model_was_moved(node: Node,
                                                           provider: FakeOpenAIServer) -> None:
    # the engine keeps each workspace's resolved model between runs: saving the model again
    # (here: another endpoint) must reach the next run's llm node
    auth = await node.setup_and_login()
    await connect_provider(node, auth, provider)
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Asker")
    publish(node, app_id, ASK)

    async def ask() -> dict[str, Any]:
        answer = await node.client.post("/v1/workflows/run", headers=key, json={
            "inputs": {"question": "Opening hours?"}, "user": "ann",
            "response_mode": "blocking"})
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        assert data["status"] == "succeeded", data
        return data

    await ask()
    with FakeOpenAIServer(api_key=KEY, models={MODEL}) as moved:
        await connect_provider(node, auth, moved)
        asked = len(provider.chat_requests), len(moved.chat_requests)
        await ask()
        assert (len(provider.chat_requests), len(moved.chat_requests)) == (asked[0],
                                                                           asked[1] + 1)
