"""Trigger nodes without I/O: a schedule node's fire times (cron or Dify's visual config, in
its zone, across daylight-saving changes), the ids of a tick's run, a webhook call checked
against its node and turned into the run's inputs, the caller's answer, the webhook URL's
signature, and a workflow that starts from triggers instead of a start node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from gateway.workflow.triggers import _trigger_id_of, webhook_id_for
from schemas.workflow.naming import scheduled_run_ids
from workflow_graph.errors import MissingStartNode
from workflow_graph.graph import parse_graph, validate
from workflow_graph.triggers import (
    TriggerConfigError,
    WebhookConfig,
    WebhookRequest,
    WebhookRequestError,
    check_triggers,
    schedule_of,
    trigger_outputs,
    webhook_inputs,
    webhook_response,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ticks(data: dict[str, Any], after: str, count: int) -> list[datetime]:
    cron, moment, found = schedule_of("s", data), at(after), []
    for _ in range(count):
        moment = cron.next_after(moment)
        found.append(moment)
    return found


# --- schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize(("frequency", "config", "expression"), [
    ("hourly", {"on_minute": 15}, "15 * * * *"),
    ("daily", {"time": "2:30 PM"}, "30 14 * * *"),
    ("daily", {"time": "12:05 AM"}, "5 0 * * *"),
    ("weekly", {"time": "9:00 AM", "weekdays": ["fri", "mon"]}, "0 9 * * 1,5"),
    ("monthly", {"time": "12:00 PM", "monthly_days": [15, 1, "last"]}, "0 12 1,15,L * *"),
])
def test_visual_schedules_become_dify_cron_expressions(
        frequency: str, config: dict[str, Any], expression: str) -> None:
    cron = schedule_of("s", {"mode": "visual", "frequency": frequency, "visual_config": config,
                             "timezone": "Asia/Tokyo"})
    assert (cron.expression, cron.timezone) == (expression, "Asia/Tokyo")


def test_a_daily_visual_time_fires_at_that_local_time() -> None:
    assert ticks({"frequency": "daily", "visual_config": {"time": "9:00 AM"},
                  "timezone": "Asia/Kolkata"}, "2026-01-01T00:00:00", 2) == [
        at("2026-01-01T03:30:00"), at("2026-01-02T03:30:00")]


def test_a_local_time_stays_local_across_daylight_saving_in_new_york() -> None:
    daily = {"mode": "cron", "cron_expression": "0 9 * * *", "timezone": "America/New_York"}
    # EST (UTC-5) until 8 March 2026, EDT (UTC-4) after
    assert ticks(daily, "2026-03-06T15:00:00", 3) == [
        at("2026-03-07T14:00:00"), at("2026-03-08T13:00:00"), at("2026-03-09T13:00:00")]
    # back to EST on 1 November
    assert ticks(daily, "2026-10-30T15:00:00", 3) == [
        at("2026-10-31T13:00:00"), at("2026-11-01T14:00:00"), at("2026-11-02T14:00:00")]


def test_a_time_the_spring_change_skips_fires_once_that_day() -> None:
    # 02:30 does not exist in New York on 8 March 2026: the tick is at 03:00 EDT, once
    skipped = {"mode": "cron", "cron_expression": "30 2 * * *", "timezone": "America/New_York"}
    assert ticks(skipped, "2026-03-07T12:00:00", 3) == [
        at("2026-03-08T07:00:00"), at("2026-03-09T06:30:00"), at("2026-03-10T06:30:00")]


def test_every_minute_through_the_autumn_change_is_one_tick_per_real_minute() -> None:
    minutely = {"mode": "cron", "cron_expression": "* * * * *", "timezone": "Europe/Berlin"}
    # 03:00 CEST becomes 02:00 CET on 25 October 2026 (01:00 UTC): the local hour repeats,
    # the ticks do not
    found = ticks(minutely, "2026-10-25T00:30:00", 120)
    assert found == [at("2026-10-25T00:30:00") + timedelta(minutes=i + 1) for i in range(120)]
    assert len({scheduled_run_ids(uuid4(), "s", t) for t in found}) == 120


@pytest.mark.parametrize(("data", "problem"), [
    ({"mode": "cron", "cron_expression": ""}, "Cron expression is required"),
    ({"mode": "cron", "cron_expression": "*/5 * * *"}, "not a 5-field cron expression"),
    ({"mode": "cron", "cron_expression": "0 9 * * *", "timezone": "Mars/Olympus"},
     "unknown time zone"),
    ({"mode": "sometimes"}, "Invalid schedule mode"),
    ({"frequency": "yearly"}, "Unsupported frequency"),
    ({"frequency": "daily", "visual_config": {"time": "25:00 PM"}}, "Invalid time"),
    ({"frequency": "daily", "visual_config": {"time": "noon"}}, "Invalid time format"),
    ({"frequency": "weekly", "visual_config": {"weekdays": []}}, "Weekdays are required"),
    ({"frequency": "monthly", "visual_config": {"monthly_days": [32]}}, "Monthly days"),
])
def test_schedules_that_name_no_time_are_refused_with_the_reason(
        data: dict[str, Any], problem: str) -> None:
    with pytest.raises(TriggerConfigError, match=problem) as caught:
        schedule_of("every_morning", data)
    assert caught.value.node_id == "every_morning"


def test_a_ticks_run_ids_are_the_same_wherever_and_however_often_it_is_fired() -> None:
    app = uuid4()
    tick = at("2026-05-01T06:00:00")
    same_instant = tick.astimezone(ZoneInfo("Asia/Tokyo"))
    assert scheduled_run_ids(app, "s", tick) == scheduled_run_ids(app, "s", same_instant)
    run, task = scheduled_run_ids(app, "s", tick)
    assert run != task
    others = {scheduled_run_ids(app, "s", tick + timedelta(minutes=1)),
              scheduled_run_ids(app, "t", tick), scheduled_run_ids(uuid4(), "s", tick)}
    assert (run, task) not in others and len(others) == 3


# --- webhooks -------------------------------------------------------------------------------

ORDER = {"method": "post", "content_type": "application/json",
         "headers": [{"name": "X-Shop", "type": "string", "required": True}],
         "params": [{"name": "lang", "type": "string"},
                    {"name": "page", "type": "number"}],
         "body": [{"name": "item", "type": "string", "required": True},
                  {"name": "quantity", "type": "number"},
                  {"name": "gift", "type": "boolean"},
                  {"name": "tags", "type": "array[string]"}]}


def call(method: str = "POST", content_type: str = "application/json", raw: bytes = b"{}",
         headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
         form: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method=method, headers={"X-Shop": "north", **(headers or {})},
                          query=query or {}, content_type=content_type, raw=raw, form=form)


def test_a_fitting_call_becomes_difys_webhook_inputs_and_the_nodes_outputs() -> None:
    config = WebhookConfig.of("hook", ORDER)
    inputs = webhook_inputs(config, call(
        raw=b'{"item": "tea", "quantity": 2, "tags": ["green"], "note": "fast"}',
        content_type="application/json; charset=utf-8", query={"lang": "en", "page": "3"}))
    assert inputs["webhook_body"] == {"item": "tea", "quantity": 2, "tags": ["green"],
                                      "note": "fast"}
    assert inputs["webhook_query_params"] == {"lang": "en", "page": 3}
    assert inputs["webhook_headers"]["X-Shop"] == "north"
    assert inputs["webhook_data"]["method"] == "POST"
    outputs = trigger_outputs("trigger-webhook", ORDER, inputs)
    assert {k: v for k, v in outputs.items() if k != "_webhook_raw"} == {
        "X_Shop": "north", "lang": "en", "page": 3, "item": "tea", "quantity": 2,
        "gift": None, "tags": ["green"]}
    assert outputs["_webhook_raw"] == inputs["webhook_data"]


def test_only_the_declared_headers_and_the_content_type_are_kept() -> None:
    inputs = webhook_inputs(WebhookConfig.of("hook", ORDER), call(
        raw=b'{"item": "tea"}', headers={"Authorization": "Bearer s3cret", "Cookie": "a=b",
                                         "Content-Type": "application/json",
                                         "X-Api-Key": "k3y"}))
    assert inputs["webhook_headers"] == {"X-Shop": "north", "Content-Type": "application/json"}
    assert inputs["webhook_data"]["headers"] == inputs["webhook_headers"]


def test_form_values_are_converted_to_their_types() -> None:
    form = {**ORDER, "content_type": "application/x-www-form-urlencoded"}
    inputs = webhook_inputs(WebhookConfig.of("hook", form), call(
        content_type="application/x-www-form-urlencoded",
        raw=b"item=tea&quantity=2.5&gift=yes"))
    assert inputs["webhook_body"] == {"item": "tea", "quantity": 2.5, "gift": True}
    multipart = {**ORDER, "content_type": "multipart/form-data"}
    inputs = webhook_inputs(WebhookConfig.of("hook", multipart), call(
        content_type="multipart/form-data; boundary=x", raw=b"",
        form={"item": "tea", "quantity": "4"}))
    assert inputs["webhook_body"] == {"item": "tea", "quantity": 4}


def test_a_text_body_is_the_raw_text() -> None:
    text = {"method": "put", "content_type": "text/plain",
            "body": [{"name": "message", "type": "string", "required": True}]}
    inputs = webhook_inputs(WebhookConfig.of("hook", text),
                            call(method="PUT", content_type="text/plain", raw="héllo".encode()))
    assert inputs["webhook_body"] == {"raw": "héllo"}
    assert trigger_outputs("trigger-webhook", text, inputs)["message"] == "héllo"
    with pytest.raises(WebhookRequestError, match="Required body content missing"):
        webhook_inputs(WebhookConfig.of("hook", text),
                       call(method="PUT", content_type="text/plain", raw=b""))


@pytest.mark.parametrize(("request_", "problem"), [
    (call(method="GET"), "HTTP method mismatch. Expected POST, got GET"),
    (call(content_type="text/plain"), "Content-type mismatch. Expected application/json, "
                                      "got text/plain"),
    (WebhookRequest(method="POST", headers={}, query={}, content_type="application/json",
                    raw=b'{"item": "tea"}'), "Required header missing: X-Shop"),
    (call(raw=b'{"quantity": 1}'), "Required body parameter missing: item"),
    (call(raw=b'{"item": "tea", "quantity": "two"}'),
     "Parameter 'quantity' validation failed: Expected number, got str"),
    (call(raw=b'{"item": "tea", "gift": 1}'),
     "Parameter 'gift' validation failed: Expected boolean, got int"),
    (call(raw=b'{"item": "tea", "tags": [1]}'), "Parameter 'tags' validation failed"),
    (call(raw=b'{"item": '), "Invalid JSON body"),
    (call(raw=b'["tea"]'), "The JSON body must be an object"),
    (call(raw=b'{"item": "tea"}', query={"page": "first"}),
     "Parameter 'page' validation failed"),
])
def test_a_call_that_does_not_fit_its_node_is_refused_with_the_reason(
        request_: WebhookRequest, problem: str) -> None:
    with pytest.raises(WebhookRequestError) as caught:
        webhook_inputs(WebhookConfig.of("hook", ORDER), request_)
    assert problem in str(caught.value)


def test_the_caller_gets_the_nodes_response_or_difys_default() -> None:
    assert webhook_response(WebhookConfig.of("h", {})) == (
        {"status": "success", "message": "Webhook processed successfully"}, 200)
    assert webhook_response(WebhookConfig.of("h", {"status_code": 202,
                                                   "response_body": '{"queued": true}'})) == (
        {"queued": True}, 202)
    assert webhook_response(WebhookConfig.of("h", {"response_body": "thanks"})) == (
        {"message": "thanks"}, 200)


@pytest.mark.parametrize("data", [{"method": "trace"}, {"content_type": "image/png"},
                                  {"status_code": 99}, {"body": [{"name": "x", "type": "int"}]},
                                  {"params": [{"type": "string"}]}])
def test_webhook_nodes_that_could_not_answer_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(TriggerConfigError):
        WebhookConfig.of("hook", data)


def test_a_published_graph_may_hold_at_most_five_webhooks() -> None:
    def hooks(count: int) -> dict[str, Any]:
        return {"nodes": [{"id": f"h{i}", "data": {"type": "trigger-webhook"}}
                          for i in range(count)], "edges": []}
    check_triggers(hooks(5))
    with pytest.raises(TriggerConfigError, match="maximum webhook node limit"):
        check_triggers(hooks(6))
    check_triggers({"nodes": [{"id": "x", "data": "not a mapping"}]})  # not a trigger


def test_a_webhook_url_opens_only_with_this_deployments_signature() -> None:
    trigger = uuid4()
    webhook_id = webhook_id_for("key-1", trigger)
    assert _trigger_id_of("key-1", webhook_id) == trigger
    assert _trigger_id_of("key-2", webhook_id) is None  # another SECRET_KEY
    forged = webhook_id[:-1] + ("A" if webhook_id[-1] != "A" else "B")
    assert _trigger_id_of("key-1", forged) is None
    assert _trigger_id_of("key-1", webhook_id_for("key-1", uuid4())[:22] + webhook_id[22:]) \
        is None
    assert _trigger_id_of("key-1", "short") is None
    assert _trigger_id_of("key-1", "!" * len(webhook_id)) is None


# --- a workflow started by triggers -----------------------------------------------------------


def test_a_workflow_may_start_from_triggers_alone_a_chatflow_may_not() -> None:
    nodes = [{"id": "tick", "data": {"type": "trigger-schedule", "title": "Tick"}},
             {"id": "end", "data": {"type": "end", "title": "End"}}]
    graph = parse_graph({"nodes": nodes, "edges": [
        {"id": "e", "source": "tick", "target": "end"}]})
    assert validate(graph, "workflow") == []
    with pytest.raises(MissingStartNode):
        validate(graph, "advanced-chat")
