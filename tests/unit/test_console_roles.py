"""Every console route takes exactly one role dependency of gateway.auth (or is public), and
the permission table (tests/console_roles.py) has a row for each, naming the roles the route
serves: a console route added without either fails here. The role is read on every request:
a member whose role changes finds routes opened or closed within the same session.
tests/e2e/test_console_roles.py tries every row with every role over HTTP."""

from __future__ import annotations

from typing import Any

from schemas.platform.naming import account_id_for
from tests.console_roles import (
    CONSOLE,
    FORBIDDEN,
    PUBLIC,
    TABLE,
    console_routes,
    join_as,
    role_dependencies,
    served_roles,
)
from tests.harness import Node


async def test_every_console_route_takes_exactly_one_role_dependency(node: Node) -> None:
    routes = console_routes(node.app)
    assert PUBLIC <= routes.keys(), f"public routes gone: {PUBLIC - routes.keys()}"
    wrong = {f"{method} {path}: {len(role_dependencies(dependant))}"
             for (method, path), dependant in routes.items()
             if len(role_dependencies(dependant)) != ((method, path) not in PUBLIC)}
    assert not wrong, ("each console route needs exactly one role dependency of gateway.auth "
                       f"(public ones none): {sorted(wrong)}")


async def test_the_permission_table_has_each_route_with_the_roles_it_serves(node: Node) -> None:
    routes = console_routes(node.app)
    table = {(row.method, row.path): row.allowed for row in TABLE}
    assert len(table) == len(TABLE), "a route has two rows"
    assert table.keys() == routes.keys() - PUBLIC, (
        f"rows missing: {sorted(routes.keys() - PUBLIC - table.keys())}, "
        f"rows for no route: {sorted(table.keys() - routes.keys())}")
    assert table == {key: served_roles(routes[key]) for key in table}


async def test_a_role_change_counts_at_once_on_the_routes_it_opens_and_closes(
        node: Node) -> None:
    owner = await node.setup_and_login()
    member = await join_as(node, owner, "ed@example.com", "editor")
    member_id = str(account_id_for("ed@example.com"))
    assert (await node.client.post(f"{CONSOLE}/apps", headers=member, json={
        "name": "Ed's bot", "mode": "chat"})).status_code == 201

    async def make_role(role: str) -> None:
        changed = await node.client.put(
            f"{CONSOLE}/workspaces/current/members/{member_id}/update-role", headers=owner,
            json={"role": role})
        assert changed.status_code == 200, changed.text

    async def answer(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = await node.client.request(method, f"{CONSOLE}{path}", headers=member,
                                             **kwargs)
        return response.status_code, response.json()

    # A normal member still sees the apps, and can no longer build one (same session).
    await make_role("normal")
    before = node.container.store.max_position()
    assert await answer("POST", "/apps", json={"name": "Another", "mode": "chat"}) == (
        403, FORBIDDEN)
    assert node.container.store.max_position() == before
    status, apps = await answer("GET", "/apps")
    assert (status, [a["name"] for a in apps["data"]]) == (200, ["Ed's bot"])

    # A dataset operator reaches knowledge and the models it picks from, not the apps.
    await make_role("dataset_operator")
    assert await answer("GET", "/apps") == (403, FORBIDDEN)
    assert (await answer("GET", "/workspaces/current/model-providers"))[0] == 200
