"""/health says "degraded" and names the projection when its lag stops shrinking (here: no
projector runs), while /ready (can we serve?) stays 200."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from adapters.embedded.postgres import EmbeddedPostgres
from tests.harness import node_settings, running_node


async def test_a_lag_that_stops_shrinking_makes_health_degraded(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str) -> None:
    settings = node_settings(postgres, fresh_database("stall"), redis_url,
                             HEALTH_LAG_STALL_SECONDS=1, COMMAND_TIMEOUT_SECONDS=5,
                             PROJECTION_WAIT_SECONDS=0.5)
    async with running_node(settings, roles=["relay", "commands", "scheduler"]) as node:
        setup = await node.client.post("/console/api/setup", json={
            "email": "owner@example.com", "name": "Owner", "password": "passw0rd1"})
        assert setup.status_code == 202  # accepted; the read model cannot follow
        first = await node.client.get("/health")
        assert first.json()["checks"]["projections"]["lag"]["console_v1"] > 0
        await asyncio.sleep(1.2)
        health = await node.client.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "degraded"
        assert body["checks"]["projections"]["status"] == "stalled"
        assert body["checks"]["projections"]["stalled"] == ["console_v1"]
        assert body["checks"]["relay"]["status"] == "ok"
        assert (await node.client.get("/ready")).status_code == 200
