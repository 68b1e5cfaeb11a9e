"""Events a read model cannot apply, on a running node (real Postgres and Redis), operated
with the `eddy` commands as an operator would.

- A NUL character already in the event store (recorded before the edge refused it) is
  projected with U+FFFD in its place, live and by `eddy projections rebuild`, into text and
  jsonb columns alike; nothing is dead-lettered and /health stays 200.
- An event whose apply fails for good is parked: its aggregate's later events wait behind
  it without piling up dead letters, everything else goes on, `eddy projections status`,
  /status and /health (200, "parked") show it, and `eddy dlq drop` (skip) or `eddy dlq
  replay` (after a fix) lets the aggregate move on.
- A version that fails (a new layout's bug) never holds back the active one: a revoked API
  key stops working at once while the inactive version parks the revocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.embedded.postgres import EmbeddedPostgres
from commands.aggregate import Context
from commands.platform.aggregates import App, Workspace
from commands.unit_of_work import UnitOfWork
from config import Settings
from events.envelope import Envelope
from events.store import CommandOutcome
from projections.layout import layout_of
from projections.tables import PROJECTION_NAME
from schemas.platform import events as ev
from schemas.platform.commands import SealedCredentials
from tests.harness import Node, eventually, node_settings, running_node
from tests.integration.conftest import operator_env
from tests.integration.test_cli_operations import eddy, json_lines

REPLACED = "\ufffd"


@pytest.fixture
def settings(postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    return operator_env(monkeypatch, node_settings(
        postgres, fresh_database("poison"), redis_url, HEALTH_LAG_STALL_SECONDS=1,
        PROJECTION_WAIT_SECONDS=2))


def _owner(node: Node) -> tuple[UUID, UUID]:
    """(account, workspace) of the set-up owner, from the event store."""
    setup = next(e for e in node.container.store.read_from(0, 100)
                 if isinstance(e.payload, ev.SetupCompleted))
    return setup.payload.account_id, setup.payload.workspace_id


def _record(node: Node, change: Callable[[UnitOfWork, Context], None]) -> None:
    """Appends what `change` records straight to the event store, as an older release (or
    another writer) could have: no gateway in the way."""
    account, workspace = _owner(node)
    command_id = uuid4()
    ctx = Context(tenant_id=workspace, actor_id=account, correlation_id=command_id,
                  causation_id=command_id)
    uow = UnitOfWork(node.container.store, ctx)
    change(uow, ctx)
    node.container.store.append(uow.new_events(), CommandOutcome(
        command_id=command_id, status="accepted", aggregate_id=workspace,
        aggregate_version=None, position=None, result={}, error=None))


async def _one(node: Node, sql: str, **params: Any) -> Any:
    async with node.container.read_models.database.connect() as conn:
        return (await conn.execute(text(sql), params)).first()


async def _lags_zero(node: Node, auth: dict[str, str]) -> bool:
    status = await node.client.get("/status.json", headers=auth)
    return set(status.json()["dependencies"]["projections"]["lag"].values()) == {0}


async def test_a_stored_nul_is_projected_and_rebuilt_and_health_stays_ok(
        settings: Settings) -> None:
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        created = await node.client.post("/console/api/apps", headers=auth,
                                         json={"name": "plain", "mode": "chat"})
        app_id = UUID(created.json()["id"])
        _record(node, lambda uow, ctx: uow.get(App, app_id).update(
            {"name": "Nul\x00 app", "description": "a\x00b"}, ctx))
        _, workspace = _owner(node)
        _record(node, lambda uow, ctx: uow.get(Workspace, workspace).save_provider_credentials(
            "langgenius/openai/openai", SealedCredentials(ciphertext="sealed", masked={
                "openai_api_key": "sk-\x00***", "note\x00": ["x\x00"]}), ctx))

        async def renamed() -> bool:
            r = await node.client.get(f"/console/api/apps/{app_id}", headers=auth)
            return bool(r.json()["name"] == f"Nul{REPLACED} app")
        await eventually(renamed)
        await eventually(lambda: _lags_zero(node, auth))
        masked = await _one(node, "SELECT credentials_masked FROM console_v1.provider_credentials"
                                  " WHERE tenant_id = :t", t=workspace)
        assert masked is not None and masked[0] == {
            "openai_api_key": f"sk-{REPLACED}***", f"note{REPLACED}": [f"x{REPLACED}"]}
        await asyncio.sleep(1.2)  # past HEALTH_LAG_STALL_SECONDS
        health = await node.client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        code, out, err = await eddy("dlq", "list", "--json")
        assert code == 0 and json_lines(out) == [], out

        code, out, err = await eddy("projections", "rebuild", "console")
        assert code == 0, err
        assert "console_v2 (layout 2) is live" in out
        row = await _one(node, "SELECT name, description FROM console_v2.apps WHERE id = :a",
                         a=app_id)
        assert tuple(row) == (f"Nul{REPLACED} app", f"a{REPLACED}b")
        masked = await _one(node, "SELECT credentials_masked FROM console_v2.provider_credentials"
                                  " WHERE tenant_id = :t", t=workspace)
        assert masked[0]["openai_api_key"] == f"sk-{REPLACED}***"
        health = await node.client.get("/health")
        assert health.status_code == 200, health.text


def _failing_on(node: Node, monkeypatch: pytest.MonkeyPatch, event: type[ev.EventPayload],
                when: Callable[[AsyncConnection, Envelope[Any]], bool]) -> Callable[[], None]:
    """A projector bug: the projector of `event` raises (a deterministic error) when `when`
    holds, and does its work otherwise. Returns the fix."""
    handlers = node.container.projections[PROJECTION_NAME].handlers
    real = handlers[event]

    async def buggy(conn: AsyncConnection, e: Envelope[Any]) -> None:
        if when(conn, e):
            raise ValueError(f"projector bug on {e.type} v{e.aggregate_version}")
        await real(conn, e)

    monkeypatch.setitem(handlers, event, buggy)  # type: ignore[arg-type]
    return lambda: monkeypatch.setitem(handlers, event, real)  # type: ignore[arg-type]


async def _app_name(node: Node, auth: dict[str, str], app_id: str) -> str:
    r = await node.client.get(f"/console/api/apps/{app_id}", headers=auth)
    return str(r.json()["name"])


async def _status(node: Node, auth: dict[str, str]) -> dict[str, Any]:
    r = await node.client.get("/status.json", headers=auth)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_poisoned_event_is_parked_visibly_and_the_operator_skips_or_replays_it(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        apps = {}
        for name in ("skipped", "replayed"):
            r = await node.client.post("/console/api/apps", headers=auth,
                                       json={"name": name, "mode": "chat"})
            apps[name] = r.json()["id"]
        fix = _failing_on(node, monkeypatch, ev.AppUpdated,
                          lambda conn, e: e.payload.name.startswith("poison"))
        for name, app_id in apps.items():
            for new_name in (f"poison {name}", f"after {name} 1", f"after {name} 2"):
                r = await node.client.put(f"/console/api/apps/{app_id}", headers=auth,
                                          json={"name": new_name})
                assert r.status_code in (200, 202), r.text
        other = await node.client.post("/console/api/apps", headers=auth,
                                       json={"name": "unaffected", "mode": "chat"})
        assert other.status_code == 201, other.text  # every other aggregate goes on

        async def parked() -> list[dict[str, Any]]:
            _, out, _ = await eddy("projections", "status", "--json")
            [v1] = [v for v in json_lines(out) if v["projection"] == PROJECTION_NAME]
            return v1["parked"] if len(v1["parked"]) == 2 and v1["waiting_events"] == 6 \
                and v1["lag_events"] == 0 else []
        found = await eventually(parked, timeout=30)
        assert {p["aggregate_id"] for p in found} == set(apps.values())
        assert {p["event_type"] for p in found} == {"AppUpdated"}
        assert all("projector bug" in p["error"] for p in found)
        assert {await _app_name(node, auth, a) for a in apps.values()} == set(apps)
        # one dead letter per poisoned aggregate, not one per event waiting behind it
        code, out, _ = await eddy("dlq", "list", "--json")
        letters = json_lines(out)
        assert len(letters) == 2 and {d["group"] for d in letters} == {"projection.console"}
        code, out, _ = await eddy("projections", "status")
        assert "parked: App" in out and "eddy dlq replay" in out

        await asyncio.sleep(1.2)  # past HEALTH_LAG_STALL_SECONDS: parked is not stalled
        health = await node.client.get("/health")
        assert health.status_code == 200, health.text
        assert (health.json()["status"], health.json()["checks"]["projections"]) == (
            "degraded", "parked")  # states only: the details are on the status page
        status = await _status(node, auth)
        check = status["dependencies"]["projections"]
        assert check["parked"] == {"console_v1": 2} and "eddy dlq" in check["reason"]
        assert {p["aggregate_id"] for p in status["parked_events"]} == set(apps.values())
        assert status["projections"][0]["parked"] == 2
        panel = await node.client.get("/status/panel", headers=auth)
        assert "Parked events" in panel.text and "projector bug" in panel.text
        metrics = await node.client.get("/metrics")
        assert 'eddy_projection_parked_events{projection="console_v1"} 2.0' in metrics.text

        by_key = {d["key"]: d for d in letters}
        skip = by_key[apps["skipped"]]
        code, out, err = await eddy("dlq", "drop", skip["topic"], skip["id"],
                                    "--reason", "bad data, given up")
        assert code == 0 and "skipped where parked: console_v1" in out, out + err
        assert await _app_name(node, auth, apps["skipped"]) == "after skipped 2"
        resolved = await _one(node, "SELECT resolution, reason FROM projection_parked"
                                    " WHERE aggregate_id = :a", a=apps["skipped"])
        assert tuple(resolved) == ("skipped", "bad data, given up")

        fix()
        replay = by_key[apps["replayed"]]
        code, out, err = await eddy("dlq", "replay", replay["topic"], replay["id"])
        assert code == 0, err

        async def caught_up() -> bool:
            return await _app_name(node, auth, apps["replayed"]) == "after replayed 2"
        await eventually(caught_up)
        await eventually(lambda: _lags_zero(node, auth))
        code, out, _ = await eddy("projections", "status", "--json")
        assert {(v["schema"], len(v["parked"]), v["waiting_events"]) for v in json_lines(out)} \
            == {("console_v1", 0, 0), ("statistics_v1", 0, 0)}
        health = await node.client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        code, out, _ = await eddy("dlq", "list", "--json")
        assert json_lines(out) == []


async def test_a_failing_inactive_version_never_holds_back_the_active_one(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        app = await node.client.post("/console/api/apps", headers=auth,
                                     json={"name": "keys", "mode": "chat"})
        app_id = app.json()["id"]
        key = (await node.client.post(f"/console/api/apps/{app_id}/api-keys",
                                      headers=auth)).json()
        bearer = {"Authorization": f"Bearer {key['token']}"}
        assert (await node.client.get("/v1/parameters", headers=bearer)).status_code == 200
        code, _, err = await eddy("projections", "rebuild", "console")
        assert code == 0, err  # console_v2 (layout 2) is live beside the active console_v1
        # A bug of layout 2 only: the new version cannot revoke keys.
        _failing_on(node, monkeypatch, ev.ApiKeyRevoked,
                    lambda conn, e: layout_of(conn) == 2)

        revoked = await node.client.delete(f"/console/api/apps/{app_id}/api-keys/{key['id']}",
                                           headers=auth)
        assert revoked.status_code in (202, 204), revoked.text

        async def key_refused() -> bool:
            r = await node.client.get("/v1/parameters", headers=bearer)
            return r.status_code == 401
        await eventually(key_refused, timeout=10)

        async def parked_in_v2() -> dict[str, Any]:
            _, out, _ = await eddy("projections", "status", "--json")
            versions = {v["schema"]: v for v in json_lines(out)}
            return versions if versions["console_v2"]["parked"] else {}
        versions = await eventually(parked_in_v2, timeout=30)
        assert versions["console_v1"]["parked"] == [] and versions["console_v1"]["active"]
        assert versions["console_v1"]["lag_events"] == 0
        [parked] = versions["console_v2"]["parked"]
        assert (parked["event_type"], parked["aggregate_id"]) == ("ApiKeyRevoked", key["id"])
        # v2 cannot be switched to with a parked event
        code, _, err = await eddy("projections", "switch", "console", "2")
        assert code == 2 and "parked" in err
        # the live model kept going: a key created now works, in v1
        later = (await node.client.post(f"/console/api/apps/{app_id}/api-keys",
                                        headers=auth)).json()
        r = await node.client.get("/v1/parameters",
                                  headers={"Authorization": f"Bearer {later['token']}"})
        assert r.status_code == 200, r.text
