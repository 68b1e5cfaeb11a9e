"""The same slice, the same handler code, on the Kafka bus (tansu broker)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from tests.harness import node_settings, running_node

pytestmark = pytest.mark.kafka


async def test_console_slice_over_kafka(postgres: EmbeddedPostgres,
                                        fresh_database: Callable[..., str], redis_url: str,
                                        kafka_bootstrap: str) -> None:
    settings = node_settings(postgres, fresh_database("kafka"), redis_url, kafka_bootstrap)
    assert settings.bus.value == "kafka"
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        created = await node.client.post("/console/api/apps", headers=auth,
                                         json={"name": "On Kafka", "mode": "workflow"})
        assert created.status_code == 201, created.text
        app_id = created.json()["id"]
        key = (await node.client.post(f"/console/api/apps/{app_id}/api-keys",
                                      headers=auth)).json()
        service = {"Authorization": f"Bearer {key['token']}"}
        info = await node.client.get("/v1/info", headers=service)
        assert info.status_code == 200 and info.json()["mode"] == "workflow"

        assert (await node.client.delete(f"/console/api/apps/{app_id}",
                                         headers=auth)).status_code == 204
        # deleting the app revoked its keys with it
        assert (await node.client.get("/v1/info", headers=service)).status_code == 401
        status = (await node.client.get("/status.json", headers=auth)).json()
        assert status["dependencies"]["bus"] == {"status": "ok", "kind": "kafka"}
        assert status["dependencies"]["projections"]["lag"] == {"console_v1": 0,
                                                             "statistics_v1": 0}
