"""What a gateway process keeps between requests: read-model reads such as the console
callers' identities (gateway/read_cache.py) and their tokens' checked signatures
(gateway/auth.py). Neither may let through what the read model or the clock refuses."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest

from events.listener import Notifications
from gateway.auth import Identity
from gateway.read_cache import noticed_cache
from projections.read_cache import RECENT_NOTICES, NoticedCache
from projections.runner import PROJECTION_CHANNEL
from projections.tables import VERSIONS_CHANNEL
from tests.harness import Node

API = "/console/api"


def _notice(aggregate: object, version: int = 2) -> str:
    return f"console_v1:{aggregate}:{version}"


def test_a_read_overlapped_by_a_notice_about_what_it_read_is_not_kept() -> None:
    cache: NoticedCache[UUID, Identity] = NoticedCache()
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



def test_every_kept_read_goes_when_a_read_model_version_changes_state() -> None:
    notifications = Notifications(None, [])  # in-process: published here, heard here
    request: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(
        container=SimpleNamespace(notifications=notifications))))
    account, workspace = uuid4(), uuid4()
    for name in ("console_identities", "api_keys", "run_configs"):
        cache = noticed_cache(request, name)
        assert cache is not None
        cache.keep(account, "kept", {account, workspace}, cache.mark())

    notifications.publish(PROJECTION_CHANNEL, _notice(workspace))  # names what it was read from
    assert not any(c.entries for c in request.app.state.noticed_caches.values())
    for cache in request.app.state.noticed_caches.values():
        cache.keep(account, "kept", {account, workspace}, cache.mark())
    notifications.publish(VERSIONS_CHANNEL, "console")  # reads may move to another version
    assert not any(c.entries for c in request.app.state.noticed_caches.values())
