"""Workflow triggers on Postgres and Redis: a webhook call starts a run from its webhook node
with the call's fields as the node's outputs (the run in the app's logs), a call that does
not fit starts nothing; a per-minute schedule fired by two schedulers at once starts one run
per tick, and a schedule whose ticks went by unfired fires the latest one once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import select

from adapters.embedded.postgres import EmbeddedPostgres
from projections.workflow.runs.tables import workflow_runs
from projections.workflow.tables import workflow_schedules
from tests.chat import app_with_key
from tests.harness import (
    Node,
    eventually,
    everything_recorded,
    in_plaintext,
    node_settings,
    running_node,
)
from tests.workflows import edge, end_outputs, graph, graph_node, publish_in_console
from workers.workflow.schedules import fire_due_schedules

ORDER_HOOK = graph_node(
    "hook", "trigger-webhook", "Order placed", method="post", content_type="application/json",
    headers=[{"name": "X-Shop", "type": "string", "required": True}],
    params=[{"name": "lang", "type": "string"}],
    body=[{"name": "item", "type": "string", "required": True},
          {"name": "quantity", "type": "number", "required": True}],
    status_code=202, response_body='{"queued": true}')
ORDERS = graph(
    [ORDER_HOOK, graph_node("end", "end", outputs=end_outputs(
        ("item", ["hook", "item"]), ("quantity", ["hook", "quantity"]),
        ("shop", ["hook", "X_Shop"]), ("lang", ["hook", "lang"])))],
    [edge("hook", "end")])

ZONE = "Asia/Kolkata"  # UTC+05:30: a tick's local time is not its UTC time
EVERY_MINUTE = graph(
    [graph_node("tick", "trigger-schedule", "Every minute", mode="cron",
                cron_expression="* * * * *", timezone=ZONE),
     graph_node("end", "end", outputs=end_outputs(("at", ["tick", "current_time"])))],
    [edge("tick", "end")])


async def runs_of(node: Node, app_id: str) -> list[dict[str, Any]]:
    async with node.container.engine.connect() as conn:
        rows = (await conn.execute(select(workflow_runs).where(
            workflow_runs.c.app_id == UUID(app_id)).order_by(workflow_runs.c.created_at))
        ).mappings().all()
    return [dict(r) for r in rows]


async def test_a_webhook_call_starts_a_run_with_the_calls_fields(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Orders")
    await publish_in_console(node, auth, app_id, ORDERS)
    shown = await node.client.get(f"/console/api/apps/{app_id}/workflows/triggers/webhook",
                                  params={"node_id": "hook"}, headers=auth)
    assert shown.status_code == 200, shown.text
    webhook = shown.json()
    path = urlsplit(webhook["webhook_url"]).path
    assert path == f"/triggers/webhook/{webhook['webhook_id']}"
    listed = await node.client.get(f"/console/api/apps/{app_id}/triggers", headers=auth)
    assert [(t["trigger_type"], t["node_id"], t["title"]) for t in listed.json()["data"]] == [
        ("trigger-webhook", "hook", "Order placed")]

    # the caller's credentials: headers the node does not declare are not kept
    secrets = {"Authorization": "Bearer hook-caller-token-4711",
               "Cookie": "session=hook-caller-cookie-4711"}
    order = {"X-Shop": "north", "Idempotency-Key": "order-1", **secrets}
    answered = await node.client.post(path, params={"lang": "en"}, headers=order,
                                      json={"item": "tea", "quantity": 2})
    # answered at once, as the node says, before the run has run
    assert (answered.status_code, answered.json()) == (202, {"queued": True})
    again = await node.client.post(path, params={"lang": "en"}, headers=order,
                                   json={"item": "tea", "quantity": 2})
    assert again.status_code == 202  # the same Idempotency-Key: the same run

    async def logged() -> list[dict[str, Any]]:
        page = (await node.client.get("/v1/workflows/logs", headers=key)).json()["data"]
        return [e for e in page if e["workflow_run"]["status"] == "succeeded"]

    [entry] = await eventually(logged)
    assert entry["workflow_run"]["triggered_from"] == "webhook"
    run = (await node.client.get(f"/v1/workflows/run/{entry['workflow_run']['id']}",
                                 headers=key)).json()
    assert run["outputs"] == {"item": "tea", "quantity": 2, "shop": "north", "lang": "en"}
    inputs = orjson.loads(run["inputs"])  # Dify's run detail: inputs as JSON text
    assert inputs["webhook_body"] == {"item": "tea", "quantity": 2}
    assert inputs["webhook_query_params"] == {"lang": "en"}
    assert {k.lower() for k in inputs["webhook_headers"]} == {"x-shop", "content-type"}
    recorded = await everything_recorded(node, "console_v1.workflow_runs",
                                         "console_v1.workflow_node_executions")
    assert not any(in_plaintext(secret, recorded) for secret in
                   ("hook-caller-token-4711", "hook-caller-cookie-4711"))

    # calls that do not fit the node, or no webhook at all: refused, nothing started
    refusals = [
        (await node.client.get(path, headers=order), 400, "HTTP method mismatch"),
        (await node.client.post(path, headers={"X-Shop": "north"}, json={"item": "tea"}),
         400, "Required body parameter missing: quantity"),
        (await node.client.post(path, headers={"X-Shop": "north"},
                                json={"item": "tea", "quantity": "two"}), 400,
         "Parameter 'quantity' validation failed"),
        (await node.client.post(path, headers={"X-Shop": "north",
                                               "Content-Type": "application/json"},
                                content=b'{"item": '), 400, "Invalid JSON body"),
        (await node.client.post(path, json={"item": "tea", "quantity": 1}), 400,
         "Required header missing: X-Shop"),
        (await node.client.post(path[:-1] + ("A" if path[-1] != "A" else "B"),
                                headers=order, json={"item": "tea", "quantity": 1}),
         404, "Webhook not found"),
        (await node.client.post("/triggers/webhook/nothing", headers=order, json={}),
         404, "Webhook not found"),
    ]
    for response, status, message in refusals:
        assert response.status_code == status, response.text
        assert response.json()["status"] == status and message in response.json()["message"]
    await asyncio.sleep(0.5)  # what a refused call would have started has had time to start
    assert len(await runs_of(node, app_id)) == 1


@pytest.mark.settings(WEBHOOK_REQUEST_BODY_MAX_SIZE=1024)
async def test_a_webhook_body_over_the_limit_is_refused_without_a_declared_length(
        node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, _ = await app_with_key(node, auth, mode="workflow", name="Orders")
    form_hook = graph_node("form", "trigger-webhook", "Order form", method="post",
                           content_type="multipart/form-data")
    await publish_in_console(node, auth, app_id, graph(
        [ORDER_HOOK, form_hook, graph_node("end", "end", outputs=[])],
        [edge("hook", "end"), edge("form", "end")]))

    async def path_of(node_id: str) -> str:
        shown = await node.client.get(f"/console/api/apps/{app_id}/workflows/triggers/webhook",
                                      params={"node_id": node_id}, headers=auth)
        return urlsplit(shown.json()["webhook_url"]).path

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse by
        yield b'{"item": "' + b"t" * 800
        yield b"e" * 800 + b'", "quantity": 1}'

    chunked = await node.client.post(await path_of("hook"), content=chunks(), headers={
        "X-Shop": "north", "Content-Type": "application/json"})
    assert "content-length" not in chunked.request.headers
    multipart = await node.client.post(await path_of("form"), data={"item": "t" * 2048})
    for refused in (chunked, multipart):
        assert refused.status_code == 413, refused.text
        assert refused.json()["code"] == "request_entity_too_large"
    await asyncio.sleep(0.5)  # what a refused call would have started has had time to start
    assert await runs_of(node, app_id) == []


# a node without a scheduler: the test fires the schedules itself, at times it picks
UNSCHEDULED = ["relay", "commands", "projections", "workflow.runs"]


def finished(node: Node, app_id: str, count: int) -> Callable[[], Any]:
    """A check: the app's runs once there are `count`, all succeeded."""
    async def check() -> list[dict[str, Any]] | None:
        runs = await runs_of(node, app_id)
        done = [r for r in runs if r["status"] == "succeeded"]
        return runs if len(done) == count == len(runs) else None
    return check


async def test_two_schedulers_firing_a_tick_start_one_run_and_missed_ticks_fire_once(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
        redis_url: str) -> None:
    settings = node_settings(postgres, fresh_database("sched"), redis_url)
    async with running_node(settings, roles=UNSCHEDULED) as node:
        c = node.container
        auth = await node.setup_and_login()
        app_id, _ = await app_with_key(node, auth, mode="workflow", name="Minutely")
        await publish_in_console(node, auth, app_id, EVERY_MINUTE)

        async def next_fire() -> datetime:
            async with c.engine.connect() as conn:
                return await conn.scalar(select(workflow_schedules.c.next_fire_at).where(
                    workflow_schedules.c.app_id == UUID(app_id)))

        first = await eventually(next_fire)
        assert first.second == 0 and first > datetime.now(first.tzinfo) - timedelta(seconds=5)
        assert await fire_due_schedules(c.engine, c.store, c.handlers,
                                        first - timedelta(seconds=1)) == 0  # not due yet

        # two schedulers (or one and a redelivery) fire the tick at once
        await asyncio.gather(*(fire_due_schedules(c.engine, c.store, c.handlers,
                                                  first + timedelta(seconds=s))
                               for s in (1, 2)))

        [run] = await eventually(finished(node, app_id, 1))
        assert run["triggered_from"] == "schedule"
        local = first.astimezone(ZoneInfo(ZONE)).isoformat()
        assert (run["inputs"], run["outputs"]) == ({"current_time": local}, {"at": local})
        # the run moved the schedule on: the same tick fired again starts nothing
        await eventually(lambda: _after(next_fire, first))
        assert await next_fire() == first + timedelta(minutes=1)
        assert await fire_due_schedules(c.engine, c.store, c.handlers,
                                        first + timedelta(seconds=30)) == 0

        # the scheduler was down for three more ticks: the latest fires, once
        late = first + timedelta(minutes=4, seconds=10)
        await asyncio.gather(*(fire_due_schedules(c.engine, c.store, c.handlers, late)
                               for _ in range(2)))
        runs = await eventually(finished(node, app_id, 2))
        latest = (first + timedelta(minutes=4)).astimezone(ZoneInfo(ZONE)).isoformat()
        assert runs[1]["inputs"] == {"current_time": latest}
        await eventually(lambda: _after(next_fire, first + timedelta(minutes=4)))
        assert await fire_due_schedules(c.engine, c.store, c.handlers, late) == 0
        assert len(await runs_of(node, app_id)) == 2


async def _after(read: Callable[[], Any], moment: datetime) -> bool:
    return bool(await read() > moment)


async def test_a_trigger_that_names_no_schedule_is_saved_but_not_published(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, _ = await app_with_key(node, auth, mode="workflow", name="Someday")
    base = f"/console/api/apps/{app_id}/workflows"
    half_made = graph([graph_node("tick", "trigger-schedule", mode="cron",
                                  cron_expression="every morning"),
                       graph_node("end", "end", outputs=[])], [edge("tick", "end")])
    draft = (await node.client.get(f"{base}/draft", headers=auth)).json()
    saved = await node.client.post(f"{base}/draft", headers=auth, json={
        "graph": half_made, "features": {}, "environment_variables": [],
        "conversation_variables": [], "hash": draft["hash"]})
    assert saved.status_code == 200, saved.text  # the editor saves as the user types
    refused = await node.client.post(f"{base}/publish", headers=auth, json={})
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "invalid_param"
    assert "'tick'" in refused.json()["message"]
    assert (await node.client.get(f"{base}/publish", headers=auth)).json() is None
