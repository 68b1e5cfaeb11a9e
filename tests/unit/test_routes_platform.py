"""The platform context's routes on the in-memory node (tests/memory.py), through the real
FastAPI app: setup, login (refresh tokens and lockout live in the key-value store), apps,
API keys and the Service API they open, idempotent retries. tests/e2e covers the same
context on Postgres and Redis."""

from __future__ import annotations

from tests.harness import Node

OWNER = {"email": "owner@example.com", "password": "passw0rd1"}
LOGIN_FAILED = {"code": "authentication_failed", "message": "Invalid email or password.",
                "status": 401}


async def test_setup_once_then_login_refresh_single_use_and_lockout(node: Node) -> None:
    assert (await node.client.get("/console/api/setup")).json()["step"] == "not_started"
    await node.setup_and_login()
    assert (await node.client.get("/console/api/setup")).json()["step"] == "finished"
    again = await node.client.post("/console/api/setup", json={
        "email": "other@example.com", "name": "Other", "password": "passw0rd1"})
    assert again.status_code == 403 and again.json()["code"] == "already_setup"

    tokens = (await node.client.post("/console/api/login", json=OWNER)).json()["data"]
    refreshed = await node.client.post("/console/api/refresh-token",
                                       json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["data"]["access_token"]
    reused = await node.client.post("/console/api/refresh-token",
                                    json={"refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 401

    limit = node.container.settings.LOGIN_LOCKOUT_ATTEMPTS
    for _ in range(limit):
        bad = await node.client.post("/console/api/login",
                                     json={**OWNER, "password": "wrong1234"})
        assert (bad.status_code, bad.json()) == (401, LOGIN_FAILED)
    locked = await node.client.post("/console/api/login", json=OWNER)
    assert locked.status_code == 429 and locked.json()["code"] == "email_code_login_limit"


async def test_app_lifecycle_reads_its_own_writes(node: Node) -> None:
    auth = await node.setup_and_login()
    created = await node.client.post("/console/api/apps", headers=auth, json={
        "name": "Support bot", "mode": "chat", "description": "answers tickets"})
    assert created.status_code == 201, created.text
    app = created.json()
    assert app["author_name"] == "Owner"
    listed = (await node.client.get("/console/api/apps", headers=auth)).json()
    assert listed["total"] == 1 and listed["data"][0]["id"] == app["id"]

    updated = await node.client.put(f"/console/api/apps/{app['id']}", headers=auth,
                                    json={"name": "Helpdesk", "description": "v2"})
    assert updated.status_code == 200 and updated.json()["name"] == "Helpdesk"
    assert (await node.client.delete(f"/console/api/apps/{app['id']}",
                                     headers=auth)).status_code == 204
    gone = await node.client.get(f"/console/api/apps/{app['id']}", headers=auth)
    assert gone.status_code == 404 and gone.json()["code"] == "app_not_found"


async def test_api_keys_open_the_service_api_and_record_their_last_use(node: Node) -> None:
    auth = await node.setup_and_login()
    app = (await node.client.post("/console/api/apps", headers=auth,
                                  json={"name": "Support bot", "mode": "chat"})).json()
    created = await node.client.post(f"/console/api/apps/{app['id']}/api-keys", headers=auth)
    assert created.status_code == 201 and created.json()["last_used_at"] is None
    key = created.json()
    service = {"Authorization": f"Bearer {key['token']}"}

    info = await node.client.get("/v1/info", headers=service)
    assert info.status_code == 200 and info.json()["name"] == "Support bot"
    keys = (await node.client.get(f"/console/api/apps/{app['id']}/api-keys",
                                  headers=auth)).json()["data"]
    assert [k["id"] for k in keys] == [key["id"]] and keys[0]["last_used_at"] is not None

    dataset_key = (await node.client.post("/console/api/datasets/api-keys",
                                          headers=auth)).json()
    as_app = await node.client.get(
        "/v1/info", headers={"Authorization": f"Bearer {dataset_key['token']}"})
    assert as_app.status_code == 401 and as_app.json()["code"] == "unauthorized"

    revoked = await node.client.delete(
        f"/console/api/apps/{app['id']}/api-keys/{key['id']}", headers=auth)
    assert revoked.status_code == 204
    assert (await node.client.get("/v1/info", headers=service)).status_code == 401


async def test_service_api_sees_its_app_changed_at_once(node: Node) -> None:
    """The gateway keeps a key's app between requests: an edit in the console shows on the
    next Service API call all the same."""
    auth = await node.setup_and_login()
    app = (await node.client.post("/console/api/apps", headers=auth,
                                  json={"name": "Support bot", "mode": "chat"})).json()
    key = (await node.client.post(f"/console/api/apps/{app['id']}/api-keys",
                                  headers=auth)).json()
    service = {"Authorization": f"Bearer {key['token']}"}
    assert (await node.client.get("/v1/info", headers=service)).json()["name"] == "Support bot"
    renamed = await node.client.put(f"/console/api/apps/{app['id']}", headers=auth,
                                    json={"name": "Helpdesk", "description": "v2"})
    assert renamed.status_code == 200
    info = (await node.client.get("/v1/info", headers=service)).json()
    assert (info["name"], info["description"]) == ("Helpdesk", "v2")


async def test_request_id_is_echoed_when_a_uuid_and_replaced_otherwise(node: Node) -> None:
    sent = "6f1c2a3e-0b7d-4c55-9a51-3d7c2a9e4b10"
    echoed = await node.client.get("/console/api/setup", headers={"X-Request-Id": sent})
    assert echoed.headers["X-Request-Id"] == sent
    replaced = await node.client.get("/console/api/setup", headers={"X-Request-Id": "x; rm"})
    assert replaced.headers["X-Request-Id"] not in ("x; rm", sent)
    assert len(replaced.headers["X-Request-Id"]) == 36
    unknown = await node.client.get("/console/api/no-such-route")
    assert unknown.status_code == 404 and "X-Request-Id" in unknown.headers


async def test_idempotency_key_answers_the_first_outcome(node: Node) -> None:
    auth = await node.setup_and_login()
    retry = {**auth, "Idempotency-Key": "create-support-bot"}
    first = await node.client.post("/console/api/apps", headers=retry,
                                   json={"name": "Support bot", "mode": "chat"})
    again = await node.client.post("/console/api/apps", headers=retry,
                                   json={"name": "Support bot", "mode": "chat"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert (await node.client.get("/console/api/apps", headers=auth)).json()["total"] == 1
    reused = await node.client.post("/console/api/apps", headers=retry,
                                    json={"name": "Other bot", "mode": "chat"})
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
