"""Workspaces, members and invitations over the console routes on the in-memory node
(tests/memory.py): invite → activate → log in, Dify's answers and refusals, roles that
count at once, a removed member's session ending at once, switching workspaces, the
activation token single-use, expiring and never in plaintext past the gateway.

Until the mail processor reads them, the activation link is taken where it travels: sealed
in the MailRequested the invitation recorded (tests/invitations.py)."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest

from adapters.kv import memory as memory_kv
from tests.harness import Node, add_account_with_workspace
from tests.invitations import (
    API,
    MEMBERS,
    activation_link,
    current,
    invite,
    join,
    mails_to,
    recorded,
    refused,
    token_of,
)


async def all_events(node: Node) -> bytes:
    return b"\n".join(e.to_json() for e in await recorded(node))


async def test_an_invitee_activates_once_through_the_mailed_link_and_logs_in(
        node: Node, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    owner = await node.setup_and_login()
    tenant = (await current(node, owner))["id"]
    answer = await invite(node, owner, "Newbie@Example.com", role="editor", language="de-DE")
    link = await activation_link(node, "newbie@example.com")
    token = token_of(link)
    assert answer == {"result": "success", "tenant_id": tenant, "invitation_results": [
        {"status": "success", "email": "newbie@example.com", "url": link}]}
    assert link.startswith("http://localhost:3000/activate?email=newbie%40example.com&token=")
    [mail] = await mails_to(node, "newbie@example.com")
    assert (mail.template, mail.language, mail.params) == (
        "invite_member", "de-DE", {"inviter_name": "Owner", "workspace_name": "Owner's Workspace"})
    assert token.encode() not in await all_events(node)  # only sealed, only in the mail's request

    members = (await node.client.get(MEMBERS, headers=owner)).json()["accounts"]
    assert [(m["email"], m["role"], m["status"]) for m in members] == [
        ("owner@example.com", "owner", "active"), ("newbie@example.com", "editor", "pending")]
    assert set(members[1]) == {"id", "name", "avatar", "avatar_url", "email", "last_login_at",
                               "last_active_at", "created_at", "role", "status",
                               "invitation_mail"}  # Eddy's: how the invitation's mail is doing
    assert members[0]["invitation_mail"] is None  # the owner was never invited
    assert members[1]["invitation_mail"]["status"] in ("queued", "sent")

    check = await node.client.get(f"{API}/activate/check", params={
        "workspace_id": tenant, "email": "newbie@example.com", "token": token})
    assert check.json() == {"is_valid": True, "data": {
        "workspace_name": "Owner's Workspace", "workspace_id": tenant,
        "email": "newbie@example.com"}}
    await refused(node, "GET", f"{API}/activate/check", 400, "invalid_param",
                  params={"email": "newbie@example.com"})  # no token
    for wrong in ({"token": token, "email": "other@example.com"},
                  {"token": token, "workspace_id": str(uuid4())},
                  {"token": "not-the-token"}):
        assert (await node.client.get(f"{API}/activate/check", params=wrong)).json() == {
            "is_valid": False}
    # Pending, it cannot log in yet.
    login = await node.client.post(f"{API}/login", json={"email": "newbie@example.com",
                                                          "password": "passw0rd1"})
    assert login.status_code == 401

    form = {"email": "newbie@example.com", "token": token, "name": "Nina",
            "interface_language": "de-DE", "timezone": "Europe/Berlin",
            "password": "passw0rd1"}
    for bad in ({"timezone": "Mars/Olympus"}, {"interface_language": "xx-XX"},
                {"password": "letters-only"}, {"name": ""}, {"name": "N" * 31}):
        await refused(node, "POST", f"{API}/activate", 400, "invalid_param",
                      json={**form, **bad})
    activated = await node.client.post(f"{API}/activate", json=form)
    assert activated.status_code == 200, activated.text
    assert activated.json()["result"] == "success"
    nina = {"Authorization": f"Bearer {activated.json()['data']['access_token']}"}
    assert activated.json()["data"]["refresh_token"]
    assert (await current(node, nina))["role"] == "editor"
    await node.console_login("newbie@example.com", "passw0rd1")
    assert b"passw0rd1" not in await all_events(node)
    # (the test's HTTP client logs the URLs it asks for: the browser's side, not Eddy's)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "httpx")
    assert logged and token not in logged and "passw0rd1" not in logged

    # The token worked once.
    await refused(node, "POST", f"{API}/activate", 403, "already_activate",
                  "Auth Token is invalid or account already activated, please check again.",
                  json=form)
    assert (await node.client.get(f"{API}/activate/check", params={"token": token})).json() \
        == {"is_valid": False}
    members = (await node.client.get(MEMBERS, headers=nina)).json()["accounts"]
    assert [(m["name"], m["status"]) for m in members] == [("Owner", "active"),
                                                          ("Nina", "active")]


async def test_an_activation_link_expires(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await node.setup_and_login()
    await invite(node, owner, "late@example.com")
    token = token_of(await activation_link(node, "late@example.com"))
    hours = node.container.settings.INVITE_EXPIRY_HOURS
    assert hours == 72  # Dify's default

    class Later:  # the key-value store's clock, the expiry later
        @staticmethod
        def monotonic() -> float:
            return real() + hours * 3600 + 1

    real = memory_kv.time.monotonic
    monkeypatch.setattr(memory_kv, "time", Later)
    assert (await node.client.get(f"{API}/activate/check", params={"token": token})).json() \
        == {"is_valid": False}
    await refused(node, "POST", f"{API}/activate", 403, "already_activate", json={
        "token": token, "name": "Late", "interface_language": "en-US", "timezone": "UTC"})


async def test_invitation_results_and_refusals_as_dify_gives_them(node: Node) -> None:
    owner = await node.setup_and_login()
    rival = await add_account_with_workspace(node, "rival@example.com")
    answer = await invite(node, owner, "rival@example.com", "owner@example.com",
                          "fresh@example.com", "fresh@example.com", role="normal")
    # An active account joins and signs in; a member is "invited" to sign in; each e-mail
    # counts once.
    assert [(r["status"], r["email"], r["url"].split("?")[0])
            for r in answer["invitation_results"]] == [
        ("success", "rival@example.com", "http://localhost:3000/signin"),
        ("success", "owner@example.com", "http://localhost:3000/signin"),
        ("success", "fresh@example.com", "http://localhost:3000/activate")]
    assert [m.params.get("url") for m in await mails_to(node, "rival@example.com")] == [
        "http://localhost:3000/signin"]
    assert await mails_to(node, "owner@example.com") == []
    members = (await node.client.get(MEMBERS, headers=owner)).json()["accounts"]
    assert [(m["email"], m["role"], m["status"]) for m in members] == [
        ("owner@example.com", "owner", "active"), ("rival@example.com", "normal", "active"),
        ("fresh@example.com", "normal", "pending")]
    # Invited again while pending: the mail goes again, with a new working link.
    await invite(node, owner, "fresh@example.com")
    assert len(await mails_to(node, "fresh@example.com")) == 2
    assert (await node.client.get(f"{API}/activate/check", params={
        "token": token_of(await activation_link(node, "fresh@example.com"))})).json()["is_valid"]

    path = f"{MEMBERS}/invite-email"
    for role in ("owner", "superuser"):
        await refused(node, "POST", path, 400, "invalid-role", "Invalid role", headers=owner,
                      json={"emails": ["x@example.com"], "role": role})
    await refused(node, "POST", path, 400, "invalid_param", headers=owner,
                  json={"emails": ["not-an-email"], "role": "normal"})
    await refused(node, "POST", path, 400, "invalid_param", headers=owner,
                  json={"emails": ["x@example.com"]})
    # Only admins and the owner invite (rival is a normal member here now).
    await node.client.post(f"{API}/workspaces/switch", headers=rival,
                           json={"tenant_id": (await current(node, owner))["id"]})
    await refused(node, "POST", path, 403, "forbidden", headers=rival,
                  json={"emails": ["y@example.com"], "role": "normal"})
    await refused(node, "POST", path, 401, "unauthorized",
                  json={"emails": ["y@example.com"], "role": "normal"})


async def test_roles_change_and_removal_count_at_once(node: Node) -> None:
    owner = await node.setup_and_login()
    tenant = (await current(node, owner))["id"]
    ed = await join(node, owner, "ed@example.com", "editor")
    ada = await join(node, owner, "ada@example.com", "admin")
    ids = {m["email"]: m["id"] for m in (await node.client.get(
        MEMBERS, headers=owner)).json()["accounts"]}

    def role_path(email: str) -> str:
        return f"{MEMBERS}/{ids[email]}/update-role"

    operators = f"{API}/workspaces/current/dataset-operators"
    assert (await node.client.get(operators, headers=ed)).json() == {"accounts": []}
    updated = await node.client.put(role_path("ed@example.com"), headers=owner,
                                    json={"role": "dataset_operator"})
    assert (updated.status_code, updated.json()) == (200, {"result": "success"})
    assert (await current(node, ed))["role"] == "dataset_operator"  # at once
    assert [m["email"] for m in (await node.client.get(operators, headers=ed)).json()[
        "accounts"]] == ["ed@example.com"]

    # Only the owner changes roles and removes members (Dify's check_member_permission):
    # an admin is turned away like any other member, and nothing changes.
    for member in ("owner@example.com", "ed@example.com", "ada@example.com"):
        for who in (ada, ed):
            await refused(node, "PUT", role_path(member), 403, "forbidden", headers=who,
                          json={"role": "normal"})
            await refused(node, "DELETE", f"{MEMBERS}/{ids[member]}", 403, "forbidden",
                          headers=who)
    await refused(node, "PUT", role_path("owner@example.com"), 400, "cannot-operate-self",
                  "Cannot operate self.", headers=owner, json={"role": "normal"})
    await refused(node, "PUT", role_path("ed@example.com"), 400, "invalid_param",
                  "The provided role is already assigned to the member.", headers=owner,
                  json={"role": "dataset_operator"})
    # Ownership moves only by transfer (owner-transfer); "owner" is no role to assign.
    for role in ("owner", "superuser"):
        await refused(node, "PUT", role_path("ed@example.com"), 400, "invalid-role",
                      "Invalid role", headers=owner, json={"role": role})
    await refused(node, "PUT", role_path("ed@example.com"), 400, "invalid_param",
                  headers=owner, json={})
    for unknown in (str(uuid4()), "not-a-uuid"):
        await refused(node, "PUT", f"{MEMBERS}/{unknown}/update-role", 404,
                      "member-not-found", headers=owner, json={"role": "normal"})

    await refused(node, "DELETE", f"{MEMBERS}/{ids['owner@example.com']}", 400,
                  "cannot-operate-self", headers=owner)
    await refused(node, "DELETE", f"{MEMBERS}/{uuid4()}", 404, "member-not-found",
                  headers=owner)
    assert [(m["email"], m["role"]) for m in (await node.client.get(
        MEMBERS, headers=owner)).json()["accounts"]] == [
        ("owner@example.com", "owner"), ("ed@example.com", "dataset_operator"),
        ("ada@example.com", "admin")]
    removed = await node.client.delete(f"{MEMBERS}/{ids['ed@example.com']}", headers=owner)
    assert (removed.status_code, removed.json()) == (200, {"result": "success",
                                                           "tenant_id": tenant})
    # Its session ends at once: it is in no workspace now.
    gone = await node.client.get(f"{API}/workspaces/current", headers=ed)
    assert gone.status_code == 401 and gone.json()["code"] == "unauthorized"
    assert [m["email"] for m in (await node.client.get(
        MEMBERS, headers=owner)).json()["accounts"]] == ["owner@example.com",
                                                          "ada@example.com"]


async def test_an_account_lists_and_switches_its_workspaces(node: Node) -> None:
    owner = await node.setup_and_login()
    team = await current(node, owner)
    app = await node.client.post(f"{API}/apps", headers=owner,
                                 json={"name": "Team bot", "mode": "chat"})
    assert app.status_code == 201
    rival = await add_account_with_workspace(node, "rival@example.com")
    own = await current(node, rival)
    assert (own["name"], own["role"], own["plan"], own["in_trial"]) == (
        "Rival's Workspace", "owner", "basic", True)
    await invite(node, owner, "rival@example.com", role="editor")

    listed = (await node.client.get(f"{API}/workspaces", headers=rival)).json()["workspaces"]
    assert [(w["id"], w["name"], w["current"], w["plan"], w["status"]) for w in listed] == [
        (own["id"], "Rival's Workspace", True, "sandbox", "normal"),
        (team["id"], "Owner's Workspace", False, "sandbox", "normal")]
    assert set(listed[0]) == {"id", "name", "plan", "status", "created_at", "current"}

    switched = await node.client.post(f"{API}/workspaces/switch", headers=rival,
                                      json={"tenant_id": team["id"]})
    assert switched.status_code == 200, switched.text
    assert switched.json()["result"] == "success"
    assert switched.json()["new_tenant"] == {**team, "role": "editor"}
    posted = await node.client.post(f"{API}/workspaces/current", headers=rival)
    assert posted.json() == {**team, "role": "editor"}
    # Its console works in the team's workspace now: the team's apps.
    apps = (await node.client.get(f"{API}/apps", headers=rival)).json()["data"]
    assert [a["name"] for a in apps] == ["Team bot"]

    for tenant_id in (str(uuid4()), "not-a-uuid"):
        await refused(node, "POST", f"{API}/workspaces/switch", 403, "account_not_link_tenant",
                      "Account not link tenant.", headers=rival, json={"tenant_id": tenant_id})
    await refused(node, "POST", f"{API}/workspaces/switch", 400, "invalid_param",
                  headers=rival, json={})

    # Removed from the workspace it works in, its console falls back to its own at once.
    rival_id = next(m["id"] for m in (await node.client.get(
        MEMBERS, headers=owner)).json()["accounts"] if m["email"] == "rival@example.com")
    assert (await node.client.delete(f"{MEMBERS}/{rival_id}", headers=owner)).status_code \
        == 200
    assert (await current(node, rival))["id"] == own["id"]
    listed = (await node.client.get(f"{API}/workspaces", headers=rival)).json()["workspaces"]
    assert [(w["id"], w["current"]) for w in listed] == [(own["id"], True)]
