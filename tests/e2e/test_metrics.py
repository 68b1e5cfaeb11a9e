"""GET /metrics: Prometheus text with HTTP latency by route template, command outcomes, lags
measured at scrape time, and the in-process workers' handler latency."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.harness import Node

APP = {"name": "Metered", "mode": "chat", "description": ""}


async def _samples(node: Node) -> dict[str, list[Sample]]:
    response = await node.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    by_name: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append(sample)
    return by_name


def _value(samples: list[Sample], **labels: str) -> float:
    return sum(s.value for s in samples if labels.items() <= s.labels.items())


async def test_metrics_show_requests_commands_lags_and_handlers(node: Node) -> None:
    auth = await node.setup_and_login()
    app = await node.client.post("/console/api/apps", json=APP, headers=auth)
    assert app.status_code == 201, app.text
    fetched = await node.client.get(f"/console/api/apps/{app.json()['id']}", headers=auth)
    assert fetched.status_code == 200
    key = {"Authorization": "Bearer " + (await node.client.post(
        "/console/api/datasets/api-keys", headers=auth)).json()["token"]}
    assert (await node.client.post("/v1/datasets", headers=key, json={"name": "A"})).is_success
    dup = await node.client.post("/v1/datasets", headers=key, json={"name": "A"})
    assert dup.status_code == 409

    m = await _samples(node)

    http = m["eddy_http_request_duration_seconds_count"]
    assert _value(http, method="GET", route="/console/api/apps/{app_id}", status="200") >= 1
    assert _value(http, method="POST", route="/console/api/apps", status="201") >= 1
    assert not any(app.json()["id"] in s.labels["route"] for s in http)  # templates only

    outcomes = m["eddy_command_outcomes_total"]
    assert _value(outcomes, command_type="CreateApp", status="accepted") >= 1
    assert _value(outcomes, command_type="CreateDataset", status="rejected") >= 1
    assert {s.labels["status"] for s in outcomes} == {"accepted", "rejected"}

    assert len(m["eddy_relay_lag_events"]) == 1 and m["eddy_relay_lag_events"][0].value >= 0
    projections = {s.labels["projection"] for s in m["eddy_projection_lag_events"]}
    assert {"console_v1", "statistics_v1"} <= projections
    assert m["eddy_events_appended"][0].value > 0
    dead = {s.labels["topic"]: s.value for s in m["eddy_dead_letters"]}  # the Redis bus
    assert dead["commands"] == 0

    assert _value(m["eddy_handler_duration_seconds_count"], group="commands") >= 3
    assert _value(m["eddy_events_appended_total"], type="AppCreated") >= 1
    assert _value(m["eddy_events_appended_total"], type="DatasetCreated") >= 1
    lags = {s.labels["group"]: s.value for s in m["eddy_group_lag_events"]}
    assert {"commands", "projection.console", "projection.statistics",
            "indexing.priority"} <= lags.keys()
    assert all(lag >= 0 for lag in lags.values())
    assert {s.labels["group"] for s in m["eddy_group_events_handled"]} == lags.keys()
    assert _value(m["eddy_group_messages_handled_total"], group="commands") >= 3
