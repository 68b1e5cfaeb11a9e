"""Crash faults: relay and projector processes are SIGKILLed at random points and restarted
while events keep arriving; nothing is lost or doubled, and the read model equals a clean
replay of the event store. Redelivered commands take effect once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY, build
from commands.aggregate import Context
from commands.platform.aggregates import App
from commands.unit_of_work import UnitOfWork
from config import Settings
from events.postgres_store import PostgresEventStore
from events.store import CommandOutcome, EventStore
from projections.progress import measure_lag
from projections.runner import ProjectionRunner
from projections.tables import PROJECTION_NAME
from schemas.base import CommandEnvelope
from schemas.platform.commands import CreateApp, UpdateApp
from schemas.platform.events import AppCreated
from schemas.topics import COMMANDS
from tests.harness import eventually, migrate, node_settings, running_node

ROOT = Path(__file__).resolve().parents[2]
READ_TABLES = ("apps", "accounts", "workspaces", "workspace_members", "api_keys", "setup_state")


def _spawn(env: dict[str, str], role: str) -> subprocess.Popen[bytes]:
    # A stable member name: the restarted process is the same group member (as a pod with a
    # stable name would be) and picks up what it left unacknowledged.
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--roles", role, "--member", f"fault-{role}"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _write_app_events(store: EventStore, tenant: Any, count: int, pace: float) -> None:
    """The write side producing: each app created, then renamed, as separate commands,
    spread over the time the kills happen."""
    actor = uuid4()
    for i in range(count):
        time.sleep(pace)
        app_id = uuid4()
        for step in ("create", "rename"):
            cid = uuid4()
            ctx = Context(tenant_id=tenant, actor_id=actor, correlation_id=cid, causation_id=cid)
            uow = UnitOfWork(store, ctx)
            app = uow.get(App, app_id)
            if step == "create":
                app.create(AppCreated(name=f"app {i}", mode="chat", created_by=actor), ctx)
            else:
                app.update({"name": f"app {i} renamed"}, ctx)
            store.append(uow.new_events(), CommandOutcome(
                command_id=cid, status="accepted", aggregate_id=app_id, aggregate_version=None,
                position=None, result={}, error=None))


async def _snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    container = await build(settings)
    try:
        async with container.engine.connect() as conn:
            return {
                table: [tuple(r) for r in (await conn.execute(text(
                    f"SELECT * FROM console_v1.{table} ORDER BY 1, 2"))).all()]
                for table in READ_TABLES
            }
    finally:
        await container.close()


async def _clean_replay(settings: Settings) -> None:
    """Empty the read model and apply every stored event in order, in-process."""
    container = await build(settings)
    try:
        async with container.engine.begin() as conn:
            for table in READ_TABLES:
                await conn.execute(text(f"TRUNCATE console_v1.{table} CASCADE"))
            await conn.execute(text("DELETE FROM projection_tracking"))
        active = container.read_models.active()
        runner = ProjectionRunner(container.engine, container.projections[PROJECTION_NAME],
                                  container.store, active.schema)
        position = 0
        while batch := await asyncio.to_thread(container.store.read_from, position, 500):
            for event in batch:
                await runner.apply(event)
            position = batch[-1].position or position
    finally:
        await container.close()


@pytest.mark.parametrize("kills", [
    pytest.param(4, id="short"),
    pytest.param(25, id="soak", marks=pytest.mark.slow),
])
async def test_relay_and_projector_killed_at_random_lose_nothing(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str, kills: int,
) -> None:
    settings = node_settings(postgres, fresh_database("fault"), redis_url)
    await asyncio.to_thread(migrate, settings)
    env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
    store = PostgresEventStore(ASSEMBLY.event_types, host=postgres.host, port=postgres.port,
                               user=postgres.user, password="", dbname=settings.DB_DATABASE)
    apps = 30 * kills
    producer = asyncio.create_task(
        asyncio.to_thread(_write_app_events, store, uuid4(), apps, 0.03))
    procs = {role: _spawn(env, role) for role in ("relay", "projections")}
    rng = random.Random(kills)
    try:
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            role = rng.choice(list(procs))
            procs[role].send_signal(signal.SIGKILL)
            procs[role].wait()
            procs[role] = _spawn(env, role)
        await producer
        expected_events = 2 * apps
        assert store.max_position() == expected_events

        container = await build(settings)
        try:
            async def caught_up() -> bool:
                console = container.projections[PROJECTION_NAME]
                return await measure_lag(container.engine, container.read_models.active().schema,
                                         list(console.aggregate_types)) == 0
            await eventually(caught_up, timeout=90, interval=0.5)
        finally:
            await container.close()
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        store.close()

    live = await _snapshot(settings)
    assert len(live["apps"]) == apps
    assert all(row[2].endswith("renamed") for row in live["apps"])
    await _clean_replay(settings)
    assert await _snapshot(settings) == live


async def test_redelivered_command_takes_effect_once(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
) -> None:
    settings = node_settings(postgres, fresh_database("redeliver"), redis_url)
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        me = (await node.client.get("/console/api/apps", headers=auth))
        assert me.status_code == 200
        tenant = (await _snapshot(settings))["workspaces"][0][0]
        actor = (await _snapshot(settings))["accounts"][0][0]
        app_id = uuid4()
        command = CommandEnvelope.of(
            CreateApp(app_id=app_id, name="twice", mode="chat"), aggregate_id=app_id,
            tenant_id=tenant, actor_id=actor, correlation_id=uuid4())
        before = node.container.store.max_position()
        # The same command delivered three times (a producer retry, a redelivery, a replay),
        # then a different command for the same aggregate: one partition, handled in order,
        # so once the last one has an outcome, all duplicates have been handled.
        for _ in range(3):
            await node.container.bus.publish(COMMANDS, str(app_id), command.to_json())
        rename = CommandEnvelope.of(
            UpdateApp(app_id=app_id, name="renamed"), aggregate_id=app_id,
            tenant_id=tenant, actor_id=actor, correlation_id=uuid4())
        await node.container.bus.publish(COMMANDS, str(app_id), rename.to_json())
        gateway = node.client._transport.app.state.command_gateway  # type: ignore[attr-defined]
        assert (await gateway.wait_outcome(rename.command_id, timeout=20)).status == "accepted"
        first = await gateway.wait_outcome(command.command_id, timeout=1)
        assert first is not None and first.status == "accepted"

        # Two events in all (positions may skip numbers a rolled-back group commit used).
        assert len(node.container.store.read_from(before, 100)) == 2
        versions = [e.aggregate_version for e in node.container.store.load(app_id)]
        assert versions == [1, 2]
        assert await gateway.wait_for_projection(
            await gateway.outcome(rename.command_id), timeout=20)
        listed = (await node.client.get("/console/api/apps", headers=auth)).json()
        assert [a["name"] for a in listed["data"]] == ["renamed"]
