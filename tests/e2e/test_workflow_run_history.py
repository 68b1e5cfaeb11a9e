"""Real runs read back over real HTTP on Postgres and Redis: a published workflow run by the
engine (blocking and streaming), then its detail and logs on the Service API (as Dify's spec
has them, agreeing with what the run answered) and its history and node executions on the
console (agreeing with the streamed node events)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.chat import app_with_key, sse_events
from tests.harness import Node, eventually, served
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
