"""Password hashes never leave `account_credentials`: not in the stored events (`eddy events
…`), not on the topics (the Redis streams, commands included), not in dead letters; and a
read model rebuilt from the store still lets the owner log in. Accounts registered before
(their `AccountRegistered` v1 carried the hash) keep logging in after migration 0016, with
the hash gone from the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import uuid4

import psycopg
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from adapters.bus.redis_streams import RedisStreamsBus
from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY
from config import Settings
from events.envelope import Envelope
from events.postgres_store import PostgresEventStore
from gateway.auth import hash_password
from migrations.runner import upgrade
from projections.tables import account_credentials
from schemas.platform import events as pe
from schemas.platform.naming import SETUP_ID, account_id_for
from schemas.topics import event_topic
from tests.harness import Node, eventually, node_settings, running_node
from tests.integration.conftest import operator_env
from tests.integration.test_cli_operations import eddy, json_lines
from workers.runtime import Processor, RetryPolicy, run_processor

PASSWORD = "passw0rd1"


async def _stream_entries(settings: Settings) -> list[bytes]:
    """Every field of every entry of every stream of this node (topics, DLQs, commands)."""
    client = aioredis.from_url(settings.redis_url())
    try:
        values: list[bytes] = []
        async for key in client.scan_iter(match=f"{settings.EVENT_TOPIC_PREFIX}*"):
            if await client.type(key) == b"stream":
                for _, fields in await client.xrange(key):
                    values.extend(fields.values())
        return values
    finally:
        await client.aclose()


async def _logs_in(node: Node, password: str = PASSWORD) -> bool:
    r = await node.client.post("/console/api/login",
                               json={"email": "owner@example.com", "password": password})
    return r.status_code == 200


async def _rebuild_and_switch(node: Node) -> None:
    code, _, err = await eddy("projections", "rebuild", "console", "--switch")
    assert code == 0, err
    await eventually(lambda: asyncio.sleep(
        0, node.container.read_models.active().schema == "console_v2"), timeout=10)


async def test_no_password_hash_in_events_topics_or_dead_letters(settings: Settings) -> None:
    async with running_node(settings) as node:
        bus = node.container.bus
        assert isinstance(bus, RedisStreamsBus)
        platform = event_topic("platform")

        async def refuse(message: object) -> None:
            raise RuntimeError("poisoned consumer")

        stop = asyncio.Event()  # a consumer that dead-letters every platform event
        poisoned = asyncio.create_task(run_processor(
            bus, Processor(group="poisoned", topics=[platform], handle=refuse), "m1", stop,
            policy=RetryPolicy(max_attempts=1, base_backoff=0.01)))
        try:
            await node.setup_and_login()

            async with node.container.engine.connect() as conn:
                [password_hash] = (await conn.execute(
                    select(account_credentials.c.password_hash))).scalars().all()
            assert password_hash.startswith("$argon2")
            secrets = (password_hash.encode(), b"$argon2", b"password_hash")

            code, out, err = await eddy("events", "list", "--json")
            assert code == 0, err
            events = json_lines(out)
            [registered] = [e for e in events if e["type"] == "AccountRegistered"]
            for event in events:
                code, shown, err = await eddy("events", "show", str(event["position"]))
                assert code == 0, err
                assert not any(s.decode() in shown for s in secrets), shown
            code, shown, _ = await eddy("events", "show", str(registered["position"]))
            assert "credentials_id" in shown

            async def dead_lettered() -> list[dict[str, object]] | None:
                code, out, err = await eddy("dlq", "list", "--topic", platform, "--json")
                assert code == 0, err
                letters = json_lines(out)
                return letters if len(letters) >= 3 else None  # setup's three events

            details = []
            for letter in await eventually(dead_lettered, timeout=20):
                code, detail, err = await eddy("dlq", "show", platform, str(letter["id"]))
                assert code == 0, err
                details.append(detail)
            assert any("AccountRegistered" in d and "credentials_id" in d for d in details)
            assert not [d for d in details if any(s.decode() in d for s in secrets)]

            entries = await _stream_entries(settings)
            assert any(b"AccountRegistered" in e for e in entries)  # the scan sees them
            assert not [e for e in entries if any(s in e for s in secrets)]
        finally:
            stop.set()
            await asyncio.wait_for(poisoned, 10)

        # the hash's home is not a read model: a rebuild from the store keeps the login
        await _rebuild_and_switch(node)
        assert await _logs_in(node)
        assert not await _logs_in(node, "wrong-passw0rd")


async def test_accounts_registered_with_a_hashed_event_keep_logging_in(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = operator_env(monkeypatch, node_settings(
        postgres, fresh_database("creds"), redis_url))
    url = settings.database_dsn().replace("postgresql://", "postgresql+psycopg://", 1)
    upgrade(url, "0015")
    account_id, workspace_id = account_id_for("owner@example.com"), uuid4()
    legacy_hash = hash_password(PASSWORD)
    store = PostgresEventStore(ASSEMBLY.event_types, host=postgres.host, port=postgres.port,
                               user=postgres.user, password="", dbname=settings.DB_DATABASE)
    try:
        setup = [
            ("Setup", SETUP_ID, None, pe.SetupCompleted(account_id=account_id,
                                                        workspace_id=workspace_id)),
            ("Account", account_id, None, pe.AccountRegistered(
                email="owner@example.com", name="Owner", credentials_id=account_id)),
            ("Workspace", workspace_id, workspace_id, pe.WorkspaceCreated(
                name="Owner's Workspace", owner_account_id=account_id)),
        ]
        store.append([Envelope.new(p, aggregate_type=kind, aggregate_id=i, aggregate_version=1,
                                   tenant_id=t, correlation_id=account_id,
                                   causation_id=account_id) for kind, i, t, p in setup])
        with psycopg.connect(settings.database_dsn()) as conn:
            # as code before 0016 stored it: v1, the hash in the payload
            conn.execute("""
                UPDATE stored_events SET state = convert_to((s || jsonb_build_object(
                    'schema_version', 1, 'payload', (s -> 'payload') - 'credentials_id'
                    || jsonb_build_object('password_hash', %s::text)))::text, 'UTF8')
                FROM (SELECT originator_id AS id, convert_from(state, 'UTF8')::jsonb AS s
                      FROM stored_events) AS old
                WHERE originator_id = old.id AND topic = 'Account:AccountRegistered'""",
                         (legacy_hash,))
            conn.commit()
        before = store.read_from(0, 100)
        upgrade(url)
        after = store.read_from(0, 100)
    finally:
        store.close()
    # what readers see is what the v1 upcaster showed them before
    assert [e.payload for e in after] == [e.payload for e in before]
    with psycopg.connect(settings.database_dsn()) as conn:
        raw = b"".join(bytes(r[0]) for r in conn.execute("SELECT state FROM stored_events"))
        moved = conn.execute("SELECT id, password_hash FROM account_credentials").fetchall()
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'console_v1' AND table_name = 'accounts'")}
    assert legacy_hash.encode() not in raw and b"password_hash" not in raw
    assert moved == [(account_id, legacy_hash)]
    assert "password_hash" not in columns and "credentials_id" in columns

    async with running_node(settings) as node:
        await eventually(lambda: _logs_in(node), timeout=20)
        await _rebuild_and_switch(node)
        assert await _logs_in(node)
