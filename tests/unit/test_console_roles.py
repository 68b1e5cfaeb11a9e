"""Every console route takes exactly one role dependency of gateway.auth (or is public), and
the permission table (tests/console_roles.py) has a row for each, naming the roles the route
serves: a console route added without either fails here. tests/e2e/test_console_roles.py
tries every row with every role over HTTP."""

from __future__ import annotations

from tests.console_roles import PUBLIC, TABLE, console_routes, role_dependencies, served_roles
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
