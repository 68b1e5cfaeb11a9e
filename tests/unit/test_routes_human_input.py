"""Human-input forms on the in-memory node: a run paused at a human-input node (recorded as
the engine records it: its form built by the real executor) shows its form, takes one
answer as the form allows, refuses a second one and an expired one with Dify's errors,
and is timed out by the form timeout job once past its expiry."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID, uuid4

import pytest

from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowRun
from schemas.workflow import events as we
from schemas.workflow.naming import new_form_token
from tests.chat import app_with_key
from tests.harness import Node, eventually
from workers.scheduler import run_job
from workers.workflow.forms import deadline_key, minute_of
from workers.workflow.nodes.base import HumanInputRequired, NodeCall, RunInfo
from workers.workflow.nodes.human_input import human_input
from workflow_graph.graph import Graph
from workflow_graph.graph import Node as GraphNode
from workflow_graph.variables import VariablePool

REVIEW = GraphNode(id="review", type="human-input", title="Review", data={
    "form_content": "Publish {{#llm.text#}}? Your note: {{#$outputs.note#}}",
    "inputs": [{"type": "paragraph", "output_variable_name": "note",
                "default": {"type": "variable", "selector": ["sys", "user_id"]}}],
    "user_actions": [{"id": "approve", "title": "Approve", "button_style": "primary"},
                     {"id": "reject", "title": "Reject"}],
    "timeout": 1, "timeout_unit": "hour"})


async def pause(node: Node, app_id: str, expires_in: float = 3600.0) -> tuple[UUID, str]:
    """A run of the app paused at REVIEW, as the engine records it; (run id, form token)."""
    run_id = uuid4()
    pool = VariablePool.for_run(system={"user_id": "ann"}).with_outputs(
        "llm", {"text": "the spring issue"})
    call = NodeCall(node=REVIEW, graph=Graph(nodes=(REVIEW,), edges=()), pool=pool,
                    run=RunInfo(run_id=run_id, task_id=uuid4(), app_id=UUID(app_id),
                                tenant_id=uuid4(), workflow_id=uuid4(), mode="workflow",
                                user="ann", end_user_id=None),
                    services=None, idempotency_key="k", emit=_no_emit, executors={})
    with pytest.raises(HumanInputRequired) as paused:
        await human_input(call)
    token = new_form_token(run_id)
    cause = uuid4()
    uow = UnitOfWork(node.container.store, Context(tenant_id=None, actor_id=None,
                                                   correlation_id=cause, causation_id=cause))
    run = uow.get(WorkflowRun, run_id)
    run.start(we.WorkflowRunStarted(
        app_id=UUID(app_id), workflow_id=uuid4(), task_id=uuid4(), mode="workflow",
        triggered_from="app-run", user="ann", end_user_id=None, inputs={}, system={}), uow.ctx)
    run.note(we.WorkflowRunPaused(node_id="review", form_token=token,
                                  form=dict(paused.value.form),
                                  expires_at=time.time() + expires_in), uow.ctx)
    uow.commit()
    return run_id, token


async def _no_emit(kind: str, data: Any) -> None:
    raise AssertionError("the human-input node streams nothing itself")


async def test_a_paused_runs_form_is_shown_and_answered_once(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Review flow")
    _, other_key = await app_with_key(node, auth, mode="workflow", name="Other flow")
    _, token = await pause(node, app_id)
    url = f"/v1/form/human_input/{token}"

    shown = await node.client.get(url, headers=key)
    assert shown.status_code == 200, shown.text
    form = shown.json()
    # the run's variables rendered in, the input placeholders kept for the form to fill
    assert form["form_content"] == "Publish the spring issue? Your note: {{#$outputs.note#}}"
    assert form["resolved_default_values"] == {"note": "ann"}
    assert [a["id"] for a in form["user_actions"]] == ["approve", "reject"]
    assert form["expiration_time"] > time.time() + 3500
    for other in [(await node.client.get(url, headers=other_key)),
                  (await node.client.get("/v1/form/human_input/not-a-token", headers=key)),
                  (await node.client.get(f"/v1/form/human_input/{'0' * 64}", headers=key))]:
        assert (other.status_code, other.json()["code"]) == (404, "not_found"), other.text

    bad = await node.client.post(url, headers=key, json={
        "inputs": {"note": "ok"}, "action": "publish", "user": "bob"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_form_data")
    missing = await node.client.post(url, headers=key, json={
        "inputs": {}, "action": "approve", "user": "bob"})
    assert (missing.status_code, missing.json()["code"]) == (400, "invalid_form_data")
    assert (await node.client.get(url, headers=key)).status_code == 200  # still waiting

    done = await node.client.post(url, headers=key, json={
        "inputs": {"note": "ship it"}, "action": "approve", "user": "bob"})
    assert (done.status_code, done.json()) == (200, {})
    again = await node.client.post(url, headers=key, json={
        "inputs": {"note": "no"}, "action": "reject", "user": "carl"})
    assert (again.status_code, again.json()["code"]) == (412, "human_input_form_submitted")
    shown_again = await node.client.get(url, headers=key)
    assert (shown_again.status_code, shown_again.json()["code"]) == (
        412, "human_input_form_submitted")


async def test_an_expired_form_is_refused_and_timed_out_by_the_job(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Review flow")
    run_id, token = await pause(node, app_id, expires_in=-120.0)
    url = f"/v1/form/human_input/{token}"
    for answer in [await node.client.get(url, headers=key),
                   await node.client.post(url, headers=key, json={
                       "inputs": {"note": "late"}, "action": "approve", "user": "bob"})]:
        assert (answer.status_code, answer.json()["code"]) == (412, "human_input_form_expired")

    # the form deadlines processor files the form under the minute it expires
    expires_at = node.container.store.load(run_id)[-1].payload.expires_at
    await eventually(lambda: node.container.kv.length(deadline_key(minute_of(expires_at))))
    job = node.container.jobs["time_out_human_input_forms"]
    await run_job(node.container, job)
    history = [e.payload for e in node.container.store.load(run_id)]
    assert isinstance(history[-1], we.WorkflowHumanInputTimedOut)
    await run_job(node.container, job)  # a second pass times nothing out twice
    assert len(node.container.store.load(run_id)) == len(history)
