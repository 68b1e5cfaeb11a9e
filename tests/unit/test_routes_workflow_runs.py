"""The workflow run read side's routes on the in-memory node (tests/memory.py): run
histories recorded through the write side's aggregate (tests/workflow_runs.py), projected
into the SQLite read model, read back through the Service API (checked against Dify's spec)
and the console."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest

from tests.chat import app_with_key
from tests.harness import Node, add_account_with_workspace, eventually
from tests.spec import validate
from tests.workflow_runs import VERSION, Step, Workflow, owner, record_run

LLM = Step("llm", "llm", outputs={"text": "Sunny"},
           usage={"total_tokens": 42, "total_price": "0.001", "currency": "USD"})


@pytest.fixture
async def workflow(node: Node) -> Workflow:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Weather")
    return Workflow(node, auth, app_id, key)


async def test_run_detail_as_the_spec_shows_it(workflow: Workflow) -> None:
    run_id = record_run(workflow.node, workflow.app_id, inputs={"city": "Zürich"},
                        steps=(Step("start", "start"), LLM), outputs={"answer": "Sunny"})
    await workflow.projected(run_id)
    body = (await workflow.detail(run_id)).json()
    validate("WorkflowRunDetailResponse", body)
    assert (body["id"], body["status"], body["outputs"], body["error"], body["total_steps"],
            body["total_tokens"]) == (str(run_id), "succeeded", {"answer": "Sunny"}, None, 2, 42)
    assert json.loads(body["inputs"]) == {"city": "Zürich"}  # a JSON string, as Dify's
    assert body["finished_at"] >= body["created_at"] and body["elapsed_time"] > 0

    failed = record_run(workflow.node, workflow.app_id,
                        steps=(Step("start", "start"), Step("code", error="division by zero")))
    await workflow.projected(failed)
    body = (await workflow.detail(failed)).json()
    validate("WorkflowRunDetailResponse", body)
    assert (body["status"], body["error"], body["outputs"]) == (
        "failed", "Node Code run failed: division by zero", {})


async def test_run_of_another_app_or_unknown_is_not_found(workflow: Workflow) -> None:
    node = workflow.node
    other_app, other_key = await app_with_key(node, workflow.auth, mode="workflow")
    theirs = record_run(node, other_app)
    await eventually(lambda: _found(node, theirs, other_key))
    for run_id in (theirs, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        missing = await workflow.detail(run_id)
        assert missing.status_code == 404, missing.text
        assert missing.json() == {"code": "not_found", "message": "Workflow run not found.",
                                  "status": 404}
    _, chat_key = await app_with_key(node, workflow.auth, mode="chat")
    wrong_mode = await workflow.detail(theirs, key=chat_key)
    assert (wrong_mode.status_code, wrong_mode.json()["code"]) == (400, "not_workflow_app")


async def _found(node: Node, run_id: Any, key: dict[str, str]) -> bool:
    r = await node.client.get(f"/v1/workflows/run/{run_id}", headers=key)
    return r.status_code == 200


async def test_logs_filters_and_pages(workflow: Workflow) -> None:
    node, app_id = workflow.node, workflow.app_id
    alice = record_run(node, app_id, user="alice", inputs={"city": "Oslo"},
                       outputs={"answer": "Sunny"})
    bob = record_run(node, app_id, user="bob", inputs={"city": "Bergen"},
                     steps=(Step("code", error="boom"),))
    carol = record_run(node, app_id, user="carol", stopped=True)
    debug = record_run(node, app_id, debugging=True)
    for run_id in (alice, bob, carol, debug):
        await workflow.projected(run_id)

    page = (await workflow.logs()).json()
    validate("WorkflowLogsResponse", page)
    assert (page["page"], page["limit"], page["total"], page["has_more"]) == (1, 20, 3, False)
    assert [e["workflow_run"]["id"] for e in page["data"]] == [str(carol), str(bob), str(alice)]
    entry = page["data"][-1]
    assert (entry["created_from"], entry["created_by_role"], entry["created_by_account"],
            entry["workflow_run"]["version"], entry["workflow_run"]["triggered_from"]) == (
        "service-api", "end_user", None, VERSION, "app-run")
    assert entry["created_by_end_user"]["session_id"] == "alice"

    paged = (await workflow.logs(page=2, limit=2)).json()
    validate("WorkflowLogsResponse", paged)
    assert ([e["workflow_run"]["id"] for e in paged["data"]], paged["total"],
            paged["has_more"]) == ([str(alice)], 3, False)
    assert (await workflow.logs(page=1, limit=2)).json()["has_more"] is True

    async def runs(**params: Any) -> list[str]:
        answer = await workflow.logs(**params)
        assert answer.status_code == 200, answer.text
        return [e["workflow_run"]["id"] for e in answer.json()["data"]]

    assert await runs(status="failed") == [str(bob)]
    assert await runs(status="stopped") == [str(carol)]
    assert await runs(keyword="bergen") == [str(bob)]
    assert await runs(keyword="sunny") == [str(alice)]
    assert await runs(created_by_end_user_session_id="alice") == [str(alice)]
    assert await runs(created_at__before="2000-01-01T00:00:00Z") == []
    assert await runs(created_at__after="2000-01-01T00:00:00") == [str(carol), str(bob),
                                                                    str(alice)]
    assert await runs(created_by_account="owner@example.com") == []  # its runs: debugging

    for params, message in (({"created_by_account": "nobody@example.com"},
                             "Account not found: nobody@example.com"),
                            ({"created_at__before": "yesterday"}, "created_at__before"),
                            ({"status": "running"}, "status"), ({"page": 0}, "page"),
                            ({"limit": 101}, "limit")):
        refused = await workflow.logs(**params)
        assert refused.status_code == 400, (params, refused.text)
        assert refused.json()["code"] == "invalid_param" and message in refused.json()["message"]


async def test_console_run_history_detail_and_node_executions(workflow: Workflow) -> None:
    node = workflow.node
    account, _ = owner(node)
    debug_runs = [record_run(node, workflow.app_id, debugging=True, inputs={"n": n},
                             steps=(Step("start", "start"),
                                    Step("fetch", "http-request", retries=("503",),
                                         outputs={"status_code": 200}), LLM),
                             outputs={"answer": "Sunny"})
                  for n in range(3)]
    app_run = record_run(node, workflow.app_id)
    for run_id in (*debug_runs, app_run):
        await workflow.projected(run_id)

    first = (await workflow.console("/workflow-runs", limit=2)).json()
    assert (first["limit"], first["has_more"]) == (2, True)
    assert [r["id"] for r in first["data"]] == [str(debug_runs[2]), str(debug_runs[1])]
    listed = first["data"][0]
    assert (listed["status"], listed["version"], listed["total_tokens"], listed["total_steps"],
            listed["exceptions_count"]) == ("succeeded", VERSION, 42, 3, 0)
    assert listed["created_by_account"] == {"id": str(account), "name": "Owner",
                                            "email": "owner@example.com"}
    rest = (await workflow.console("/workflow-runs", limit=2,
                                   last_id=first["data"][-1]["id"])).json()
    assert ([r["id"] for r in rest["data"]], rest["has_more"]) == ([str(debug_runs[0])], False)
    app_runs = (await workflow.console("/workflow-runs", triggered_from="app-run")).json()
    assert [r["id"] for r in app_runs["data"]] == [str(app_run)]
    unknown = await workflow.console("/workflow-runs", last_id=str(app_run).replace("-", "")[:-1])
    assert unknown.status_code == 404

    detail = (await workflow.console(f"/workflow-runs/{debug_runs[0]}")).json()
    assert (detail["inputs"], detail["outputs"], detail["created_by_role"],
            detail["created_by_end_user"]) == ({"n": 0}, {"answer": "Sunny"}, "account", None)
    assert detail["created_by_account"]["email"] == "owner@example.com"

    executions = (await workflow.console(
        f"/workflow-runs/{debug_runs[0]}/node-executions")).json()["data"]
    assert [(e["node_id"], e["index"], e["status"], e.get("retry_index"))
            for e in executions] == [("llm", 3, "succeeded", None),
                                     ("fetch", 2, "succeeded", None), ("fetch", 2, "retry", 0),
                                     ("start", 1, "succeeded", None)]
    llm = executions[0]
    assert (llm["predecessor_node_id"], llm["outputs"], llm["execution_metadata"]) == (
        "fetch", {"text": "Sunny"}, {"total_tokens": 42, "total_price": "0.001",
                                     "currency": "USD"})
    assert executions[2]["error"] == "503"

    logs = (await workflow.console("/workflow-app-logs", status="succeeded")).json()
    assert ([e["workflow_run"]["id"] for e in logs["data"]], logs["total"]) == (
        [str(app_run)], 1)
    assert logs["data"][0]["created_by_end_user"]["session_id"] == "alice"


async def test_console_sees_only_its_workspaces_workflow_apps(workflow: Workflow) -> None:
    node = workflow.node
    run_id = record_run(node, workflow.app_id)
    await workflow.projected(run_id)
    rival = await add_account_with_workspace(node, "rival@example.com")
    for path in ("/workflow-runs", f"/workflow-runs/{run_id}",
                 f"/workflow-runs/{run_id}/node-executions", "/workflow-app-logs"):
        theirs = await node.client.get(f"/console/api/apps/{workflow.app_id}{path}",
                                       headers=rival)
        assert (theirs.status_code, theirs.json()["code"]) == (404, "app_not_found"), path
    chat_app, _ = await app_with_key(node, workflow.auth, mode="chat")
    not_workflow = await node.client.get(f"/console/api/apps/{chat_app}/workflow-runs",
                                         headers=workflow.auth)
    assert (not_workflow.status_code, not_workflow.json()["code"]) == (404, "app_not_found")
    missing = await workflow.console("/workflow-runs/00000000-0000-0000-0000-000000000000")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


async def test_console_run_counts_and_an_advanced_chat_apps_runs(workflow: Workflow) -> None:
    node = workflow.node
    runs = [record_run(node, workflow.app_id, debugging=True),
            record_run(node, workflow.app_id, debugging=True, stopped=True),
            record_run(node, workflow.app_id, debugging=True, steps=(Step("code", error="x"),)),
            record_run(node, workflow.app_id)]
    for run_id in runs:
        await workflow.projected(run_id)
    counts = await workflow.console("/workflow-runs/count")
    assert counts.json() == {"total": 3, "running": 0, "succeeded": 1, "failed": 1,
                             "stopped": 1, "partial_succeeded": 0}
    app_runs = await workflow.console("/workflow-runs/count", triggered_from="app-run",
                                      time_range="1h")
    assert app_runs.json()["total"] == app_runs.json()["succeeded"] == 1
    stale = await workflow.console("/workflow-runs/count", time_range="0s")
    assert stale.json()["total"] == 0
    bad = await workflow.console("/workflow-runs/count", time_range="1 week")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_param")

    chat_app, chat_key = await app_with_key(node, workflow.auth, mode="advanced-chat")
    chatflow = Workflow(node, workflow.auth, chat_app, chat_key)
    conversation = uuid4()
    in_chat = record_run(node, chat_app, debugging=True, conversation_id=conversation)
    await chatflow.projected(in_chat)
    listed = (await chatflow.console("/advanced-chat/workflow-runs")).json()
    assert [(r["id"], r["conversation_id"]) for r in listed["data"]] == [
        (str(in_chat), str(conversation))]
    assert listed["data"][0]["message_id"] is not None
    plain = (await chatflow.console("/workflow-runs")).json()["data"][0]
    assert plain["id"] == str(in_chat) and "conversation_id" not in plain
    not_chat = await workflow.console("/advanced-chat/workflow-runs")
    assert (not_chat.status_code, not_chat.json()["code"]) == (404, "app_not_found")


async def test_outputs_kept_in_storage_are_shown(workflow: Workflow) -> None:
    """Outputs too large for an event are in storage (`outputs_ref`), as the engine puts
    them; the detail shows them from there."""
    big = {"text": "x" * 100_000}
    await workflow.node.container.storage.save("workflow_runs/big.json",
                                               json.dumps(big).encode())
    stored = record_run(workflow.node, workflow.app_id, outputs_ref="workflow_runs/big.json")
    lost = record_run(workflow.node, workflow.app_id, outputs_ref="workflow_runs/gone.json")
    for run_id in (stored, lost):
        await workflow.projected(run_id)
    detail = (await workflow.detail(stored)).json()
    validate("WorkflowRunDetailResponse", detail)
    assert detail["outputs"] == big
    assert (await workflow.console(f"/workflow-runs/{stored}")).json()["outputs"] == big
    # a blob gone from storage: the run is still shown, without its outputs
    assert (await workflow.detail(lost)).json()["outputs"] == {}
