"""Eddy heals by itself when a server it depends on restarts: Postgres or Redis goes down
under load, requests answer 503 (or 202 for commands already accepted) while it is down,
and within seconds of its return every role has reconnected and caught up, with nothing
lost or doubled. Each test runs its own server, so it can restart it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
from tests.harness import Node, eventually, node_settings, running_node

PARAGRAPHS = "\n\n".join(
    f"Paragraph {i} about restarting servers, retries and self-healing workers number {i}."
    for i in range(12))


@pytest.fixture
def own_postgres(embedded_root: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(embedded_root / f"pg-{uuid.uuid4().hex[:6]}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(embedded_root: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(embedded_root / f"valkey-{uuid.uuid4().hex[:6]}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _keys(node: Node) -> tuple[dict[str, str], dict[str, str]]:
    auth = await node.setup_and_login()
    token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
    return auth, {"Authorization": f"Bearer {token['token']}"}


async def _start_documents(node: Node, key: dict[str, str], count: int) -> tuple[str, str]:
    dataset = (await node.client.post("/v1/datasets", headers=key, json={
        "name": "healing", "indexing_technique": "economy"})).json()
    batch = ""
    for i in range(count):
        r = await node.client.post(
            f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
            json={"name": f"doc {i}", "text": PARAGRAPHS, "process_rule": {"mode": "automatic"}})
        assert r.status_code == 200, r.text
        batch = r.json()["batch"]
    return dataset["id"], batch


async def _caught_up(node: Node, key: dict[str, str], dataset_id: str, documents: int) -> Any:
    health = await node.client.get("/health")
    if health.status_code != 200:
        return None
    checks = health.json()["checks"]
    if checks["relay"]["lag"] or any(checks["projections"]["lag"].values()):
        return None
    listed = (await node.client.get(f"/v1/datasets/{dataset_id}/documents?limit=100",
                                    headers=key)).json()["data"]
    statuses = [d["indexing_status"] for d in listed]
    return statuses if statuses == ["completed"] * documents else None


async def test_postgres_restart_under_load_heals_without_losing_anything(
        own_postgres: EmbeddedPostgres, redis_url: str) -> None:
    database = f"heal_{uuid.uuid4().hex[:8]}"
    own_postgres.create_database(database)
    settings = node_settings(own_postgres, database, redis_url, COMMAND_TIMEOUT_SECONDS=3,
                             PROJECTION_WAIT_SECONDS=3)
    async with running_node(settings) as node:
        auth, key = await _keys(node)
        dataset_id, _ = await _start_documents(node, key, 6)

        await asyncio.to_thread(own_postgres.stop)  # mid-indexing
        read = await node.client.get("/console/api/apps", headers=auth)
        assert read.status_code == 503, read.text
        assert read.json()["code"] == "service_unavailable" and read.headers["Retry-After"]
        # Commands still reach the bus (Redis is up): accepted, answered "pending".
        accepted = await node.client.post("/console/api/apps", headers=auth,
                                          json={"name": "while down", "mode": "chat"})
        assert accepted.status_code in (202, 503), accepted.text
        await asyncio.sleep(2)
        await asyncio.to_thread(own_postgres.start)

        await eventually(lambda: _caught_up(node, key, dataset_id, 6), timeout=30, interval=0.5)
        if accepted.status_code == 202:  # the accepted command took effect exactly once
            status = await eventually(lambda: _settled(node, auth, accepted.json()["status_url"]),
                                      timeout=30)
            assert status["status"] == "accepted"
            apps = (await node.client.get("/console/api/apps", headers=auth)).json()["data"]
            assert [a["name"] for a in apps].count("while down") == 1
        after = await node.client.post("/console/api/apps", headers=auth,
                                       json={"name": "after", "mode": "chat"})
        assert after.status_code == 201, after.text


async def _settled(node: Node, auth: dict[str, str], url: str) -> Any:
    r = await node.client.get(url, headers=auth)
    return r.json() if r.status_code == 200 and r.json().get("status") != "pending" else None


async def test_redis_restart_under_load_heals_without_losing_anything(
        postgres: EmbeddedPostgres, own_redis: EmbeddedRedis,
        fresh_database: Any) -> None:
    settings = node_settings(postgres, fresh_database("heal"), own_redis.url,
                             COMMAND_TIMEOUT_SECONDS=3, PROJECTION_WAIT_SECONDS=3)
    async with running_node(settings) as node:
        auth, key = await _keys(node)
        dataset_id, _ = await _start_documents(node, key, 6)

        await asyncio.to_thread(own_redis.stop)
        refused = await node.client.post("/console/api/apps", headers=auth,
                                         json={"name": "while down", "mode": "chat"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "service_unavailable"
        assert refused.headers["Retry-After"]
        await asyncio.sleep(1)
        await asyncio.to_thread(own_redis.start)

        await eventually(lambda: _caught_up(node, key, dataset_id, 6), timeout=30, interval=0.5)
        after = await node.client.post("/console/api/apps", headers=auth,
                                       json={"name": "after", "mode": "chat"})
        assert after.status_code == 201, after.text
        apps = (await node.client.get("/console/api/apps", headers=auth)).json()["data"]
        assert [a["name"] for a in apps] == ["after"]
