"""An in-process Eddy node on the test servers: gateway (over ASGI) plus worker roles.

Each node gets its own database and topic prefix, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text

from adapters import outside
from adapters.bus.base import OutgoingMessage
from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY, Container, in_process_node
from config import Settings, load_settings
from events.envelope import Envelope
from events.postgres_store import PostgresEventStore
from migrations.runner import migrate, upgrade
from tests.spec_conformance import KNOWLEDGE_PREFIX, check_answer


def node_settings(postgres: EmbeddedPostgres, database: str, redis_url: str,
                  kafka_bootstrap: str | None = None, **overrides: Any) -> Settings:
    redis_host, redis_port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    values: dict[str, Any] = {
        "DB_HOST": postgres.host, "DB_PORT": postgres.port, "DB_USERNAME": postgres.user,
        "DB_PASSWORD": "", "DB_DATABASE": database,
        "REDIS_HOST": redis_host, "REDIS_PORT": int(redis_port),
        "SECRET_KEY": "test-secret-key-which-is-long-enough-for-hs256",
        "EVENT_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
        "EVENT_BUS": "kafka" if kafka_bootstrap else "redis",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap or "",
        "COMMAND_PARTITIONS": 2, "EVENT_PARTITIONS": 2,
        "COMMAND_TIMEOUT_SECONDS": 20, "PROJECTION_WAIT_SECONDS": 20,
        **overrides,
    }
    return load_settings(**values)


def migrated(postgres: EmbeddedPostgres, database: str, revision: str = "head") -> str:
    """Upgrade `database` to `revision`; returns its SQLAlchemy URL, for later upgrades."""
    url = postgres.dsn(database).replace("postgresql://", "postgresql+psycopg://", 1)
    upgrade(url, revision)
    return url


@contextmanager
def event_store(postgres: EmbeddedPostgres, database: str,
                **options: Any) -> Iterator[PostgresEventStore]:
    """`database`'s event store, closed after the block."""
    store = PostgresEventStore(ASSEMBLY.event_types, host=postgres.host, port=postgres.port,
                               user=postgres.user, password="", dbname=database, **options)
    try:
        yield store
    finally:
        store.close()


def events_across_upgrade(store: PostgresEventStore, url: str,
                          ) -> tuple[list[Envelope[Any]], list[Envelope[Any]]]:
    """What readers of `store` see before and after its database (`url`) goes to head."""
    before = store.read_from(0, 100)
    upgrade(url)
    return before, store.read_from(0, 100)


@dataclass
class Node:
    container: Container
    client: httpx.AsyncClient  # over ASGI: answers arrive whole (no streaming)
    app: FastAPI

    async def console_login(self, email: str = "owner@example.com",
                            password: str = "passw0rd1") -> dict[str, str]:
        response = await self.client.post("/console/api/login",
                                          json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        token = response.json()["data"]["access_token"]
        return {"Authorization": f"Bearer {token}"}

    async def setup_and_login(self) -> dict[str, str]:
        response = await self.client.post("/console/api/setup", json={
            "email": "owner@example.com", "name": "Owner", "password": "passw0rd1"})
        assert response.status_code == 201, response.text
        return await self.console_login()


@asynccontextmanager
async def running_node(settings: Settings, roles: Sequence[str] | None = None,
                       migrate_first: bool = True) -> AsyncIterator[Node]:
    if migrate_first:
        await asyncio.to_thread(migrate, settings)
    # The outside-call limits are the process's, set from the node's settings: a test that
    # overrides them must not leave them to the tests after it.
    limits = outside.limits()
    try:
        async with in_process_node(settings, roles, member=f"test-{uuid.uuid4().hex[:6]}") as (
            container, app,
        ):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://eddy.test",
                                         timeout=60, event_hooks={
                                             "response": [conforms_to_spec]}) as client:
                yield Node(container, client, app)
    finally:
        outside.configure(limits)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app over real HTTP on a free loopback port, in this event loop (streamed answers
    arrive as they are written; clients in threads, such as `requests`, can call it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def conforms_to_spec(response: httpx.Response) -> None:
    """Every knowledge answer a test receives must match Dify's spec (schema and the keys
    of its examples); a test that receives one that does not fails here."""
    request = response.request
    if not request.url.path.startswith(KNOWLEDGE_PREFIX):
        return
    await response.aread()
    problems = check_answer(request.method, request.url.path, dict(request.url.params),
                            response.status_code, response.headers.get("content-type", ""),
                            response.content)
    assert not problems, "answer departs from Dify's spec:\n" + "\n".join(problems)


_TRUTHY = object()


async def eventually(check: Callable[[], Any], timeout: float = 20.0,
                     interval: float = 0.1, expect: Any = _TRUTHY) -> Any:
    """Poll an async check until it returns something truthy, or `expect` when given (for
    background effects); a timeout reports the last result, so a failure shows what was
    seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if (result if expect is _TRUTHY else result == expect):
            return result
        if loop.time() > deadline:
            wanted = "" if expect is _TRUTHY else f"expected: {expect!r}, "
            raise AssertionError(
                f"condition not met within {timeout}s ({wanted}last: {result!r})")
        await asyncio.sleep(interval)


async def add_account_with_workspace(node: Node, email: str,
                                     password: str = "passw0rd1") -> dict[str, str]:
    """A second tenant: a new owner and its workspace, created as `eddy create-tenant` does
    (the password stored first, then the CreateWorkspace command through the command path);
    returns its console auth headers once projected."""
    from gateway.auth import store_credentials
    from schemas.platform.commands import CreateWorkspace, NewAccount
    from schemas.platform.naming import account_id_for

    account_id, workspace_id = account_id_for(email), uuid.uuid4()
    credentials_id = await store_credentials(node.container.engine, account_id, password)
    await node.app.state.command_gateway.send(
        CreateWorkspace(workspace_id=workspace_id, name="Rival's Workspace",
                        owner_account_id=account_id,
                        new_owner=NewAccount(email=email, name="Rival",
                                            credentials_id=credentials_id)),
        aggregate_id=account_id, tenant_id=workspace_id, actor_id=None)
    await eventually(lambda: _can_login(node, email, password))
    return await node.console_login(email, password)


async def _can_login(node: Node, email: str, password: str) -> bool:
    response = await node.client.post("/console/api/login",
                                      json={"email": email, "password": password})
    return response.status_code == 200


def record_publishes(node: Node, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """From now on, every message this node's bus publishes (value and headers)."""
    published: list[bytes] = []
    bus = node.container.bus
    publish, publish_many = bus.publish, bus.publish_many

    async def recording_publish(topic: str, key: str, value: bytes,
                                headers: dict[str, str] | None = None) -> None:
        published.append(value + repr(headers).encode())
        await publish(topic, key, value, headers)

    async def recording_publish_many(messages: Sequence[OutgoingMessage]) -> None:
        published.extend(m.value + repr(m.headers).encode() for m in messages)
        await publish_many(messages)

    monkeypatch.setattr(bus, "publish", recording_publish)
    monkeypatch.setattr(bus, "publish_many", recording_publish_many)
    return published


async def everything_recorded(node: Node, *read_tables: str) -> list[bytes]:
    """Every stored event (raw and decoded), command outcome, the rows of `read_tables`, and
    every value under this node's Redis prefix (topic streams, dead-letter streams,
    hashes...): where a secret must never appear in plaintext."""
    blobs = [e.to_json() for e in node.container.store.read_from(0, 10_000)]
    async with node.container.engine.connect() as conn:
        blobs += [bytes(s) for s in (await conn.execute(
            text("SELECT state FROM stored_events"))).scalars()]
        blobs += [repr(tuple(r)).encode() for r in await conn.execute(
            text("SELECT result, error FROM command_outcomes"))]
        for table in read_tables:
            blobs += [repr(tuple(r)).encode() for r in await conn.execute(
                text(f"SELECT * FROM {table}"))]
    client = node.container.bus.client  # type: ignore[attr-defined]
    streams = 0
    async for key in client.scan_iter(match=f"{node.container.settings.EVENT_TOPIC_PREFIX}*"):
        kind = (await client.type(key)).decode()
        if kind == "stream":
            streams += 1
            blobs += [repr(fields).encode() for _, fields in await client.xrange(key)]
        elif kind == "hash":
            blobs.append(repr(await client.hgetall(key)).encode())
        elif kind == "string":
            blobs.append(await client.get(key) or b"")
        elif kind == "zset":
            blobs.append(repr(await client.zrange(key, 0, -1)).encode())
    assert streams, "the Redis Streams topics were scanned"
    return blobs


def in_plaintext(secret: str, blobs: Sequence[bytes]) -> bool:
    """Whether the secret stands alone in one of the blobs: a 6-digit code may turn up by
    chance inside a hash, an id or a timestamp's fraction of a second."""
    alone = re.compile(rb"(?<![0-9A-Za-z.])" + re.escape(secret.encode()) + rb"(?![0-9A-Za-z])")
    return any(alone.search(blob) for blob in blobs)
