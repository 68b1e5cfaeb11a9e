"""Projectors of the operator commands' platform events: an account's new e-mail and
password (`eddy reset-email`, `eddy reset-password`)."""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy import insert

from projections.platform import queries as pq
from projections.tables import account_credentials
from schemas.platform import events as pev
from tests.unit.projectors.harness import T0, World, exercises


@exercises(pev.AccountEmailChanged, pev.AccountPasswordChanged)
async def test_an_account_is_found_by_its_new_email_with_its_new_password(
        world: World) -> None:
    credentials, renewed = uuid4(), uuid4()
    async with world.engine.begin() as conn:
        for row, password_hash in ((credentials, "h"), (renewed, "h2")):
            await conn.execute(insert(account_credentials).values(
                id=row, account_id=world.actor, password_hash=password_hash, created_at=T0))
    await world.emit("Account", world.actor, pev.AccountRegistered(
        email="old@example.com", name="Olga", credentials_id=credentials))
    await world.emit("Account", world.actor, pev.AccountEmailChanged(email="New@Example.com"))

    assert await pq.account_by_email(world.engine, "old@example.com") is None
    account = await pq.account_by_email(world.engine, "new@example.com")
    assert account is not None and account["id"] == world.actor
    assert account["password_hash"] == "h"
    await world.emit("Account", world.actor, pev.AccountPasswordChanged(credentials_id=renewed))
    account = await pq.account_by_email(world.engine, "new@example.com")
    assert account is not None and account["password_hash"] == "h2"
