"""/health says "degraded" and marks the projections "stalled" when their lag stops shrinking
(here: no projector runs), while /ready (can we serve?) stays 200. /health answers anyone,
so it shows states only: a dependency that is down is "down", its error (host, port, user)
only on the authenticated status page (`gateway/status.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
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
        assert first.json()["checks"]["projections"] == "ok"  # lagging, not yet stalled
        await asyncio.sleep(1.2)
        health = await node.client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "degraded", "checks": {
            "database": "ok", "redis": "ok", "bus": "ok", "projections": "stalled",
            "relay": "ok", "consumers": "ok"}}
        assert (await node.client.get("/ready")).status_code == 200


async def test_health_shows_a_dependency_down_without_its_error(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], tmp_path: Path) -> None:
    valkey = EmbeddedRedis(tmp_path / "valkey").start()
    try:
        settings = node_settings(postgres, fresh_database("down"), valkey.url)
        async with running_node(settings) as node:
            await node.setup_and_login()
            valkey.stop()
            health = await node.client.get("/health")
            assert health.status_code == 503
            body = health.json()
            assert body["status"] == "degraded"
            assert (body["checks"]["redis"], body["checks"]["bus"]) == ("down", "down")
            assert str(valkey.port) not in health.text and "127.0.0.1" not in health.text
            ready = await node.client.get("/ready")
            assert ready.status_code == 503 and str(valkey.port) not in ready.text
    finally:
        valkey.stop()
