"""Aggregate decisions, without infrastructure."""

from __future__ import annotations

from uuid import uuid4

import pytest

from commands.aggregate import Context
from commands.platform.aggregates import App, Setup
from schemas.errors import AlreadySetup, AppNotFound
from schemas.platform.events import AppCreated


def _ctx(tenant: object = None) -> Context:
    cid = uuid4()
    return Context(tenant_id=tenant or uuid4(), actor_id=uuid4(), correlation_id=cid,  # type: ignore[arg-type]
                   causation_id=cid)


def test_setup_happens_once() -> None:
    setup = Setup(uuid4())
    setup.complete(uuid4(), uuid4(), _ctx())
    replayed = Setup.replay(setup.id, setup.pending)
    with pytest.raises(AlreadySetup):
        replayed.complete(uuid4(), uuid4(), _ctx())


def test_app_is_invisible_to_other_workspaces_and_after_delete() -> None:
    ctx = _ctx()
    app = App(uuid4())
    app.create(AppCreated(name="a", mode="chat", created_by=uuid4()), ctx)
    with pytest.raises(AppNotFound):
        app.update({"name": "b"}, _ctx())  # another tenant
    app.delete(ctx)
    with pytest.raises(AppNotFound):
        app.ensure_visible_to(ctx.tenant_id)
    assert [e.aggregate_version for e in app.pending] == [1, 2]


def test_update_without_change_records_nothing() -> None:
    ctx = _ctx()
    app = App(uuid4())
    app.create(AppCreated(name="a", mode="chat", created_by=uuid4()), ctx)
    app.update({"name": "a", "description": None}, ctx)
    assert len(app.pending) == 1
