"""The platform context's member projectors: invited (pending) accounts, their activation
and passwords, memberships and roles, the workspace an account's console works in."""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import insert

from projections.platform import queries as pq
from projections.tables import account_credentials
from schemas.platform import events as pev
from schemas.platform.naming import account_id_for
from tests.unit.projectors.harness import T0, World, exercises, stored
from tests.unit.projectors.test_platform import setup


async def credentials(w: World, account_id: UUID, password_hash: str) -> UUID:
    """A password's row, as the gateway stores it beside the store before the command."""
    credentials_id = uuid4()
    async with w.engine.begin() as conn:
        await conn.execute(insert(account_credentials).values(
            id=credentials_id, account_id=account_id, password_hash=password_hash,
            created_at=T0))
    return credentials_id


async def role_in_console(w: World, account_id: UUID) -> tuple[UUID, str] | None:
    identity = await pq.console_identity(w.engine, account_id)
    return None if identity is None else (identity[1], identity[2])


@exercises(pev.PendingAccountCreated, pev.MemberInvited, pev.AccountActivated,
           pev.AccountPasswordChanged)
async def test_an_invited_account_is_pending_until_activated(world: World) -> None:
    owner = await setup(world)
    newbie, mail_id = account_id_for("newbie@example.com"), uuid4()
    pending = await world.emit("Account", newbie, pev.PendingAccountCreated(
        email="Newbie@Example.com", name="newbie", interface_language="ja-JP"))
    invited = await world.emit("Workspace", world.tenant, pev.MemberInvited(
        account_id=newbie, email="newbie@example.com", role="editor", invited_by=owner,
        mail_id=mail_id))

    account = await pq.account_by_email(world.engine, "newbie@example.com")
    assert account is not None
    assert {k: account[k] for k in ("id", "name", "status", "password_hash",
                                    "interface_language", "timezone")} == {
        "id": newbie, "name": "newbie", "status": "pending", "password_hash": None,
        "interface_language": "ja-JP", "timezone": "UTC"}
    members = await pq.list_members(world.engine, world.tenant)
    assert [(m["id"], m["role"], m["status"], m["invited_by"], m["mail_id"])
            for m in members] == [(owner, "owner", "active", None, None),
                                  (newbie, "editor", "pending", owner, mail_id)]
    assert (members[1]["created_at"], members[1]["joined_at"]) == (stored(pending),
                                                                   stored(invited))
    assert await pq.pending_member(world.engine, world.tenant, newbie) == {
        "email": "newbie@example.com", "workspace_name": "Olga's Workspace"}
    assert await pq.pending_member(world.engine, uuid4(), newbie) is None
    assert await pq.pending_member(world.engine, world.tenant, owner) is None  # active

    chosen = await credentials(world, newbie, "argon2$chosen")
    await world.emit("Account", newbie, pev.AccountActivated(
        name="Nina", interface_language="zh-Hans", timezone="Asia/Shanghai",
        credentials_id=chosen))
    account = await pq.account_by_email(world.engine, "newbie@example.com")
    assert account is not None
    assert {k: account[k] for k in ("name", "status", "password_hash",
                                    "interface_language", "timezone")} == {
        "name": "Nina", "status": "active", "password_hash": "argon2$chosen",
        "interface_language": "zh-Hans", "timezone": "Asia/Shanghai"}
    assert await pq.pending_member(world.engine, world.tenant, newbie) is None
    assert await role_in_console(world, newbie) == (world.tenant, "editor")

    renewed = await credentials(world, newbie, "argon2$renewed")
    await world.emit("Account", newbie, pev.AccountPasswordChanged(credentials_id=renewed))
    account = await pq.account_by_email(world.engine, "newbie@example.com")
    assert account is not None and account["password_hash"] == "argon2$renewed"

    # Activated without choosing a password, an account keeps having none.
    quiet = account_id_for("quiet@example.com")
    await world.emit("Account", quiet, pev.PendingAccountCreated(
        email="quiet@example.com", name="quiet"))
    await world.emit("Account", quiet, pev.AccountActivated(
        name="Quiet", interface_language="en-US", timezone="UTC"))
    account = await pq.account_by_email(world.engine, "quiet@example.com")
    assert account is not None
    assert (account["status"], account["password_hash"]) == ("active", None)


@exercises(pev.MemberInvited, pev.CurrentWorkspaceSwitched, pev.MemberRoleUpdated,
           pev.MemberRemoved)
async def test_a_member_of_two_workspaces_switches_and_loses_them(world: World) -> None:
    owner = await setup(world)
    other, rex = uuid4(), account_id_for("rex@example.com")
    await world.emit("Account", rex, pev.PendingAccountCreated(email="rex@example.com",
                                                               name="rex"))
    await world.emit("Workspace", world.tenant, pev.MemberInvited(
        account_id=rex, email="rex@example.com", role="normal", invited_by=owner))
    # The switch reaches the read model before the membership it names (other aggregates'
    # events arrive in any order): the console stays where it was until it does.
    await world.emit("Account", rex, pev.CurrentWorkspaceSwitched(workspace_id=other))
    assert await role_in_console(world, rex) == (world.tenant, "normal")
    await world.emit("Workspace", other, pev.WorkspaceCreated(
        name="Labs", owner_account_id=owner), tenant_id=other)
    await world.emit("Workspace", other, pev.MemberInvited(
        account_id=rex, email="rex@example.com", role="editor", invited_by=owner),
        tenant_id=other)
    assert await role_in_console(world, rex) == (other, "editor")
    assert [(w["id"], w["name"], w["role"]) for w in await pq.workspaces_of(
        world.engine, rex)] == [(world.tenant, "Olga's Workspace", "normal"),
                                (other, "Labs", "editor")]
    labs = await pq.workspace_of_member(world.engine, other, rex)
    assert labs is not None and (labs["name"], labs["status"], labs["role"]) == (
        "Labs", "normal", "editor")
    assert await pq.workspace_of_member(world.engine, other, uuid4()) is None

    await world.emit("Workspace", other, pev.MemberRoleUpdated(account_id=rex, role="admin"),
                     tenant_id=other)
    assert await role_in_console(world, rex) == (other, "admin")
    assert [m["role"] for m in await pq.list_members(world.engine, other)] == ["owner",
                                                                               "admin"]

    # Removed from the workspace it works in: its console falls back to the other one;
    # removed from that too, no console route serves it any more.
    await world.emit("Workspace", other, pev.MemberRemoved(account_id=rex), tenant_id=other)
    assert await role_in_console(world, rex) == (world.tenant, "normal")
    assert [w["id"] for w in await pq.workspaces_of(world.engine, rex)] == [world.tenant]
    assert [m["id"] for m in await pq.list_members(world.engine, other)] == [owner]
    await world.emit("Workspace", world.tenant, pev.MemberRemoved(account_id=rex))
    assert await role_in_console(world, rex) is None
    assert await pq.workspaces_of(world.engine, rex) == []
    assert await role_in_console(world, owner) == (world.tenant, "owner")
