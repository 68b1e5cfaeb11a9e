"""What a gateway process keeps between console requests: the callers' identities
(gateway/identities.py) and their tokens' checked signatures (gateway/auth.py). Neither may
let through what the read model or the clock refuses."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest

from gateway.identities import RECENT_NOTICES, ConsoleIdentities, Identity
from tests.harness import Node

API = "/console/api"


def _notice(aggregate: object, version: int = 2) -> str:
    return f"console_v1:{aggregate}:{version}"


def test_a_read_overlapped_by_a_notice_about_what_it_read_is_not_kept() -> None:
    cache = ConsoleIdentities()
    account, workspace, elsewhere = uuid4(), uuid4(), uuid4()
    identity = Identity(name="Ed", tenant_id=workspace, role="editor")

    read_at = cache.mark()
    cache.projected(_notice(elsewhere))  # about something else: the read stays good
    cache.keep(account, identity, {account, workspace}, read_at)
    assert cache.get(account) == identity

    cache.projected(_notice(workspace))  # the membership changed: gone
    assert cache.get(account) is None
    read_at = cache.mark()
    cache.projected(_notice(workspace, 3))  # while reading again: the read may be stale
    cache.keep(account, identity, {account, workspace}, read_at)
    assert cache.get(account) is None

    read_at = cache.mark()
    for _ in range(RECENT_NOTICES + 1):  # more than remembered: whether it was named is lost
        cache.projected(_notice(elsewhere))
    cache.keep(account, identity, {account, workspace}, read_at)
    assert cache.get(account) is None

    read_at = cache.mark()
    cache.clear()  # the listener reconnected: notices may have been missed meanwhile
    cache.keep(account, identity, {account, workspace}, read_at)
    assert cache.get(account) is None


async def test_an_expired_token_is_refused_though_its_signature_was_checked_before(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await node.setup_and_login()
    for _ in range(2):  # checked, then as kept
        assert (await node.client.get(f"{API}/workspaces/current", headers=owner)
                ).status_code == 200
    later = time.time() + (node.container.settings.ACCESS_TOKEN_EXPIRE_MINUTES + 1) * 60
    monkeypatch.setattr(time, "time", lambda: later)
    expired = await node.client.get(f"{API}/workspaces/current", headers=owner)
    assert expired.status_code == 401 and expired.json()["code"] == "unauthorized"


async def test_a_token_signed_with_another_key_is_refused_though_one_was_kept(
        node: Node) -> None:
    owner = await node.setup_and_login()
    assert (await node.client.get(f"{API}/workspaces/current", headers=owner)).status_code == 200
    rotated = node.container.settings.SECRET_KEY + "-rotated"
    node.container.settings.SECRET_KEY = rotated  # as after a restart with a new key
    refused = await node.client.get(f"{API}/workspaces/current", headers=owner)
    assert refused.status_code == 401
