"""The permission table (tests/console_roles.py) over HTTP: every console route tried by a
member of every role. A role the route serves is let through; any other gets Dify's 403 (or,
where Dify's route checks the role itself, its own answer), with nothing recorded in the event
store and the read model unchanged."""

from __future__ import annotations

from schemas.platform.roles import ROLES
from tests.console_roles import (
    FORBIDDEN,
    TABLE,
    body_of,
    settled_state,
    state_of,
    url_of,
    world_of,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node


async def test_every_console_route_serves_its_roles_and_refuses_the_others(
        node: Node, provider: FakeOpenAIServer) -> None:
    provider.reset()
    world = await world_of(node, provider)
    for row in TABLE:
        url, body = url_of(row, world), body_of(row, world)
        before = await settled_state(node)
        for role in sorted(set(ROLES) - row.allowed):
            refused = await node.client.request(row.method, url, headers=world.auth[role],
                                                json=body, params=row.params)
            assert (refused.status_code, refused.json()) == (403, FORBIDDEN), (
                f"{role} {row.method} {url}: {refused.status_code} {refused.text}")
        for role in sorted(row.turned_away):
            turned = await node.client.request(row.method, url, headers=world.auth[role],
                                               json=body, params=row.params)
            assert turned.json() == row.turned_away_with, f"{role} {row.method} {url}"
        assert await state_of(node) == before, f"a refused {row.method} {row.path} changed things"
        for role in sorted(row.allowed - row.turned_away):
            allowed = await node.client.request(row.method, url, headers=world.auth[role],
                                                json=body, params=row.params)
            assert allowed.status_code not in (401, 403) and allowed.status_code < 500, (
                f"{role} {row.method} {url}: {allowed.status_code} {allowed.text}")
