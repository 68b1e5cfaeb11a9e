"""What each gateway process keeps of a console caller (its identity, its token's checked
signature) on Postgres and Redis, with two gateways of one deployment: a changed role, a
removed member and a logged-out session count on the gateway that answered the change at
once, and on the other as soon as the projection's notice reaches it."""

from __future__ import annotations

from typing import Any

from tests.harness import Node, eventually, running_node
from tests.invitations import API, MEMBERS, current, join


async def _status_and_role(node: Node, auth: dict[str, str]) -> tuple[int, Any]:
    response = await node.client.get(f"{API}/workspaces/current", headers=auth)
    return response.status_code, response.json().get("role")


async def test_a_role_change_and_a_removal_reach_both_gateways_caches(node: Node) -> None:
    owner = await node.setup_and_login()
    ed = await join(node, owner, "ed@example.com", "editor")
    ed_id = next(m["id"] for m in (await node.client.get(MEMBERS, headers=owner)).json()[
        "accounts"] if m["email"] == "ed@example.com")
    async with running_node(node.container.settings, roles=[], migrate_first=False) as other:
        for gateway in (node, other):  # each keeps ed's identity from here on
            assert await _status_and_role(gateway, ed) == (200, "editor")
            assert await _status_and_role(gateway, ed) == (200, "editor")

        updated = await node.client.put(f"{MEMBERS}/{ed_id}/update-role", headers=owner,
                                        json={"role": "normal"})
        assert updated.status_code == 200, updated.text
        assert (await current(node, ed))["role"] == "normal"  # at once where it was answered
        await eventually(lambda: _status_and_role(other, ed), expect=(200, "normal"))
        for gateway in (node, other):  # a normal member creates no apps
            refused = await gateway.client.post(f"{API}/apps", headers=ed,
                                                json={"name": "x", "mode": "chat"})
            assert refused.status_code == 403, refused.text

        removed = await node.client.delete(f"{MEMBERS}/{ed_id}", headers=owner)
        assert removed.status_code == 200, removed.text
        assert (await _status_and_role(node, ed))[0] == 401  # at once
        await eventually(lambda: _status_and_role(other, ed), expect=(401, None))


async def test_a_logged_out_session_is_refused_by_both_gateways(node: Node) -> None:
    owner = await node.setup_and_login()
    async with running_node(node.container.settings, roles=[], migrate_first=False) as other:
        for gateway in (node, other):  # the token's signature checked, the identity kept
            assert await _status_and_role(gateway, owner) == (200, "owner")
        logged_out = await node.client.post(f"{API}/logout", headers=owner)
        assert logged_out.status_code == 200, logged_out.text
        for gateway in (node, other):
            assert (await _status_and_role(gateway, owner))[0] == 401
