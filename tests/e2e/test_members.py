"""Members on Postgres and Redis: an invitation activated through its mailed link, the new
member's login and roles, its session ending when it is removed; the activation token never
in the event store; ownership transferred with a mailed code."""

from __future__ import annotations

from tests.harness import Node
from tests.invitations import (
    API,
    MEMBERS,
    activation_link,
    current,
    invite,
    join,
    recorded,
    sealed_params,
    token_of,
)


async def test_invite_activate_login_and_removal(node: Node) -> None:
    owner = await node.setup_and_login()
    answer = await invite(node, owner, "nina@example.com", role="admin")
    link = await activation_link(node, "nina@example.com")
    assert answer["invitation_results"] == [
        {"status": "success", "email": "nina@example.com", "url": link}]
    token = token_of(link)
    check = await node.client.get(f"{API}/activate/check", params={
        "email": "nina@example.com", "token": token})
    assert check.json()["is_valid"] is True

    activated = await node.client.post(f"{API}/activate", json={
        "email": "nina@example.com", "token": token, "name": "Nina",
        "interface_language": "zh-Hans", "timezone": "Asia/Shanghai",
        "password": "passw0rd1"})
    assert activated.status_code == 200, activated.text
    again = await node.client.post(f"{API}/activate", json={
        "token": token, "name": "Nina", "interface_language": "zh-Hans", "timezone": "UTC"})
    assert again.status_code == 403 and again.json()["code"] == "already_activate"

    nina = await node.console_login("nina@example.com", "passw0rd1")
    me = (await node.client.get(f"{API}/workspaces/current", headers=nina)).json()
    assert (me["name"], me["role"]) == ("Owner's Workspace", "admin")
    members = (await node.client.get(MEMBERS, headers=nina)).json()["accounts"]
    assert [(m["name"], m["role"], m["status"]) for m in members] == [
        ("Owner", "owner", "active"), ("Nina", "admin", "active")]
    everything = b"".join(e.to_json() for e in await recorded(node))
    assert token.encode() not in everything and b"passw0rd1" not in everything

    removed = await node.client.delete(f"{MEMBERS}/{members[1]['id']}", headers=owner)
    assert removed.status_code == 200
    gone = await node.client.get(f"{API}/workspaces", headers=nina)
    assert gone.status_code == 401


async def test_ownership_moves_with_the_mailed_code(node: Node) -> None:
    owner = await node.setup_and_login()
    ed = await join(node, owner, "ed@example.com", "editor")
    sent = await node.client.post(f"{MEMBERS}/send-owner-transfer-confirm-email",
                                  headers=owner, json={"language": "en-US"})
    assert sent.status_code == 200, sent.text
    code = (await sealed_params(node, "owner@example.com", "owner_transfer_confirm"))["code"]
    checked = await node.client.post(f"{MEMBERS}/owner-transfer-check", headers=owner,
                                     json={"code": code, "token": sent.json()["data"]})
    assert checked.status_code == 200, checked.text
    ed_id = next(m["id"] for m in (await node.client.get(MEMBERS, headers=owner)).json()[
        "accounts"] if m["email"] == "ed@example.com")
    moved = await node.client.post(f"{MEMBERS}/{ed_id}/owner-transfer", headers=owner,
                                   json={"token": checked.json()["token"]})
    assert moved.status_code == 200, moved.text
    assert ((await current(node, ed))["role"], (await current(node, owner))["role"]) == (
        "owner", "admin")
