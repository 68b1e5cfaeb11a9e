"""The platform context's member commands: invite, update a role, remove, switch the current
workspace, activate an invited account (Dify's TenantService / RegisterService rules)."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from schemas import errors
from schemas.mail import events as me
from schemas.platform import commands as pc
from schemas.platform import events as pe
from schemas.platform.naming import account_id_for
from tests.unit.handlers.harness import (
    Ran,
    Workspace,
    World,
    accepted,
    covers,
    rejected,
    unchanged,
)

SIGNIN = "http://console.test/signin"


@pytest.fixture
def team(world: World) -> World:
    """`me` owns the workspace "Team" as Olive; `rival` owns "Rivals" as Rex (accounts'
    ids derive from their e-mails, as everywhere)."""
    world.me = Workspace(world.me.tenant_id, account_id_for("olive@example.com"))
    world.rival = Workspace(world.rival.tenant_id, account_id_for("rex@example.com"))
    for who, name, owner in ((world.me, "Team", "Olive"), (world.rival, "Rivals", "Rex")):
        world.given(pc.CreateWorkspace(
            workspace_id=who.tenant_id, name=name, owner_account_id=who.actor_id,
            new_owner=pc.NewAccount(email=f"{owner.lower()}@example.com", name=owner,
                                   credentials_id=uuid4())), as_=who)
    return world


def invite(world: World, email: str, role: str = "editor", *, as_: Workspace | None = None,
           workspace_id: UUID | None = None, language: str = "en-US") -> Ran:
    return world.run(pc.InviteMember(
        workspace_id=workspace_id or (as_ or world.me).tenant_id, email=email, role=role,
        language=language, sealed_activation=f"sealed:{email}", signin_url=SIGNIN), as_)


def member(world: World, email: str, role: str) -> Workspace:
    """An account that joined the team with `role`, acting in it."""
    accepted(invite(world, email, role))
    return Workspace(world.me.tenant_id, account_id_for(email))


def mail_of(ran: Ran) -> me.MailRequested:
    return ran.one(me.MailRequested)


@covers(pc.InviteMember)
def test_invite_makes_a_pending_account_for_a_new_email_and_asks_for_its_mail(
        team: World) -> None:
    new = accepted(invite(team, "newbie@example.com", "editor", language="de-DE"))
    newbie = account_id_for("newbie@example.com")
    assert new.outcome.result == {"account_id": str(newbie), "activation": True,
                                  "joined": True}
    assert new.types == ["PendingAccountCreated", "MemberInvited", "MailRequested"]
    assert new.event(pe.PendingAccountCreated).aggregate_id == newbie
    assert new.one(pe.PendingAccountCreated) == pe.PendingAccountCreated(
        email="newbie@example.com", name="newbie", interface_language="de-DE")
    joined = new.event(pe.MemberInvited)
    assert joined.aggregate_id == joined.tenant_id == team.me.tenant_id
    mail = new.event(me.MailRequested)
    assert new.one(pe.MemberInvited) == pe.MemberInvited(
        account_id=newbie, email="newbie@example.com", role="editor",
        invited_by=team.me.actor_id, mail_id=mail.aggregate_id)
    # The activation link travels only sealed; the mail speaks the new account's language.
    assert mail_of(new) == me.MailRequested(
        template="invite_member", to="newbie@example.com", language="de-DE",
        params={"inviter_name": "Olive", "workspace_name": "Team"},
        sealed_params="sealed:newbie@example.com")

    # Invited again while pending: the invitation is sent again, nothing else changes.
    resent = accepted(invite(team, "newbie@example.com", "admin"))
    assert resent.types == ["MailRequested"]
    assert resent.outcome.result["joined"] is False
    assert resent.event(me.MailRequested).aggregate_id != mail.aggregate_id


@covers(pc.InviteMember)
def test_invite_adds_an_existing_account_which_only_signs_in(team: World) -> None:
    rex = accepted(invite(team, "rex@example.com", "normal"))
    assert rex.types == ["MemberInvited", "MailRequested"]
    assert rex.outcome.result == {"account_id": str(team.rival.actor_id),
                                  "activation": False, "joined": True}
    assert mail_of(rex) == me.MailRequested(
        template="invite_member", to="rex@example.com", language="en-US",
        params={"inviter_name": "Olive", "workspace_name": "Team", "url": SIGNIN},
        sealed_params=None)
    # Dify's AccountAlreadyInTenantError: an active member is not invited twice.
    rejected(invite(team, "rex@example.com", "admin"), errors.AccountAlreadyInTenant)
    rejected(invite(team, "olive@example.com", "admin"), errors.AccountAlreadyInTenant)


@covers(pc.InviteMember)
def test_invite_is_refused_for_a_bad_role_a_non_admin_or_another_workspace(
        team: World) -> None:
    for role in ("owner", "superuser"):
        rejected(invite(team, "x@example.com", role), errors.InvalidRole)
    admin = member(team, "admin@example.com", "admin")
    accepted(invite(team, "by-admin@example.com", as_=admin))
    for role in ("editor", "normal", "dataset_operator"):
        who = member(team, f"{role}@example.com", role)
        rejected(invite(team, "y@example.com", as_=who), errors.Forbidden,
                 "No permission to add member.")
    # Another workspace's id is not found, whoever asks.
    rejected(invite(team, "z@example.com", workspace_id=team.rival.tenant_id),
             errors.NotFound, "Workspace not found.")
    assert not team.store.load(account_id_for("y@example.com"))
    assert not team.store.load(account_id_for("z@example.com"))


@covers(pc.UpdateMemberRole)
def test_update_member_role_follows_difys_rules(team: World) -> None:
    editor = member(team, "ed@example.com", "editor")
    admin = member(team, "ad@example.com", "admin")
    updated = accepted(team.run(pc.UpdateMemberRole(
        workspace_id=team.me.tenant_id, account_id=editor.actor_id, role="dataset_operator")),
        result="success")
    assert updated.one(pe.MemberRoleUpdated) == pe.MemberRoleUpdated(
        account_id=editor.actor_id, role="dataset_operator")
    assert updated.event(pe.MemberRoleUpdated).aggregate_id == team.me.tenant_id

    def update(account_id: UUID, role: str, as_: Workspace | None = None) -> Ran:
        return team.run(pc.UpdateMemberRole(workspace_id=team.me.tenant_id,
                                            account_id=account_id, role=role), as_)

    rejected(update(editor.actor_id, "dataset_operator"), errors.RoleAlreadyAssigned)
    rejected(update(editor.actor_id, "owner"), errors.InvalidRole)  # ownership is transferred
    rejected(update(team.me.actor_id, "admin"), errors.CannotOperateSelf)
    rejected(update(team.me.actor_id, "admin", as_=admin), errors.Forbidden,
             "No permission to update member.")
    # Only the owner changes roles: an admin changes neither a member nor another admin.
    other_admin = member(team, "ad2@example.com", "admin")
    for target in (editor, other_admin):
        rejected(update(target.actor_id, "normal", as_=admin), errors.Forbidden,
                 "No permission to update member.")
    rejected(update(admin.actor_id, "editor", as_=editor), errors.Forbidden,
             "No permission to update member.")
    accepted(update(admin.actor_id, "normal"))
    rejected(update(team.rival.actor_id, "editor"), errors.MemberNotInTenant)
    rejected(team.run(pc.UpdateMemberRole(workspace_id=team.rival.tenant_id,
                                          account_id=team.rival.actor_id, role="editor")),
             errors.NotFound, "Workspace not found.")


@covers(pc.RemoveMember)
def test_remove_member_follows_difys_rules(team: World) -> None:
    editor = member(team, "ed@example.com", "editor")
    admin = member(team, "ad@example.com", "admin")

    def remove(account_id: UUID, as_: Workspace | None = None) -> Ran:
        return team.run(pc.RemoveMember(workspace_id=team.me.tenant_id,
                                        account_id=account_id), as_)

    rejected(remove(admin.actor_id, as_=editor), errors.Forbidden,
             "No permission to remove member.")
    rejected(remove(team.me.actor_id, as_=admin), errors.Forbidden,
             "No permission to remove member.")
    rejected(remove(admin.actor_id, as_=admin), errors.CannotOperateSelf)
    # Only the owner removes: an admin removes neither a member nor another admin.
    other_admin = member(team, "ad2@example.com", "admin")
    for target in (editor, other_admin):
        rejected(remove(target.actor_id, as_=admin), errors.Forbidden,
                 "No permission to remove member.")
    rejected(remove(team.rival.actor_id), errors.MemberNotInTenant)
    accepted(remove(other_admin.actor_id), result="success")
    removed = accepted(remove(editor.actor_id), result="success")
    assert removed.one(pe.MemberRemoved) == pe.MemberRemoved(account_id=editor.actor_id)
    rejected(remove(editor.actor_id), errors.MemberNotInTenant)
    # Removed, it can no longer act as a member; invited again, it joins again.
    rejected(invite(team, "x@example.com", as_=editor), errors.Forbidden,
             "No permission to add member.")
    assert accepted(invite(team, "ed@example.com")).types == ["MemberInvited",
                                                              "MailRequested"]


@covers(pc.SwitchWorkspace)
def test_switch_workspace_only_to_one_the_account_is_a_member_of(team: World) -> None:
    accepted(invite(team, "rex@example.com", "normal"))
    rex = team.rival.actor_id
    switched = accepted(team.run(pc.SwitchWorkspace(account_id=rex,
                                                    workspace_id=team.me.tenant_id),
                                 as_=team.rival), workspace_id=str(team.me.tenant_id))
    assert switched.one(pe.CurrentWorkspaceSwitched) == pe.CurrentWorkspaceSwitched(
        workspace_id=team.me.tenant_id)
    event = switched.event(pe.CurrentWorkspaceSwitched)
    assert event.aggregate_id == rex and event.tenant_id == team.me.tenant_id
    unchanged(team.run(pc.SwitchWorkspace(account_id=rex, workspace_id=team.me.tenant_id),
                       as_=team.rival))
    accepted(team.run(pc.SwitchWorkspace(account_id=rex, workspace_id=team.rival.tenant_id),
                      as_=team.rival))

    olive = team.me.actor_id
    rejected(team.run(pc.SwitchWorkspace(account_id=olive,
                                         workspace_id=team.rival.tenant_id)),
             errors.AccountNotLinkTenant)
    rejected(team.run(pc.SwitchWorkspace(account_id=olive, workspace_id=uuid4())),
             errors.AccountNotLinkTenant)
    # An account switches itself only.
    rejected(team.run(pc.SwitchWorkspace(account_id=rex, workspace_id=team.me.tenant_id)),
             errors.AccountNotLinkTenant)


@covers(pc.ActivateAccount)
def test_activate_account_completes_a_pending_account_once(team: World) -> None:
    accepted(invite(team, "newbie@example.com"))
    newbie, credentials = account_id_for("newbie@example.com"), uuid4()

    def activate(account_id: UUID) -> Ran:
        return team.run(pc.ActivateAccount(
            account_id=account_id, name="Newbie", interface_language="zh-Hans",
            timezone="Asia/Shanghai", credentials_id=credentials), as_=Workspace(
                team.me.tenant_id, account_id))

    activated = accepted(activate(newbie), account_id=str(newbie))
    assert activated.one(pe.AccountActivated) == pe.AccountActivated(
        name="Newbie", interface_language="zh-Hans", timezone="Asia/Shanghai",
        credentials_id=credentials)
    rejected(activate(newbie), errors.AlreadyActivated)
    rejected(activate(team.me.actor_id), errors.AlreadyActivated)  # never pending
    rejected(activate(uuid4()), errors.AlreadyActivated)  # no such account


@covers(pc.RequestOwnerTransferCode)
def test_only_the_owner_is_mailed_an_owner_transfer_code(team: World) -> None:
    admin = member(team, "ad@example.com", "admin")

    def ask(as_: Workspace | None = None, workspace: UUID | None = None) -> Ran:
        return team.run(pc.RequestOwnerTransferCode(
            workspace_id=workspace or team.me.tenant_id, language="zh-Hans",
            sealed_params="sealed:code", expiry_minutes=5), as_)

    asked = accepted(ask())
    assert asked.types == ["MailRequested"]
    assert mail_of(asked) == me.MailRequested(
        template="owner_transfer_confirm", to="olive@example.com", language="zh-Hans",
        params={"WorkspaceName": "Team", "expiry_minutes": 5}, sealed_params="sealed:code")
    assert asked.outcome.result == {"mail_id": str(asked.event(me.MailRequested).aggregate_id)}
    rejected(ask(as_=admin), errors.NotOwner)
    rejected(ask(workspace=team.rival.tenant_id), errors.NotFound, "Workspace not found.")


@covers(pc.TransferOwnership)
def test_transfer_ownership_makes_the_member_owner_and_the_owner_admin(team: World) -> None:
    editor = member(team, "ed@example.com", "editor")
    admin = member(team, "ad@example.com", "admin")

    def transfer(account_id: UUID, as_: Workspace | None = None) -> Ran:
        return team.run(pc.TransferOwnership(workspace_id=team.me.tenant_id,
                                             account_id=account_id), as_)

    rejected(transfer(editor.actor_id, as_=admin), errors.NotOwner)
    rejected(transfer(team.me.actor_id), errors.CannotTransferOwnerToSelf)
    rejected(transfer(team.rival.actor_id), errors.NotInWorkspace)
    moved = accepted(transfer(editor.actor_id), result="success")
    assert [e.payload for e in moved.events if isinstance(e.payload, pe.MemberRoleUpdated)] \
        == [pe.MemberRoleUpdated(account_id=editor.actor_id, role="owner"),
            pe.MemberRoleUpdated(account_id=team.me.actor_id, role="admin")]
    mails = [e.payload for e in moved.events if isinstance(e.payload, me.MailRequested)]
    assert mails == [
        me.MailRequested(template="owner_transfer_new_notify", to="ed@example.com",
                         params={"WorkspaceName": "Team"}),
        me.MailRequested(template="owner_transfer_old_notify", to="olive@example.com",
                         params={"WorkspaceName": "Team", "NewOwnerEmail": "ed@example.com"})]
    # The new owner rules now; the old one is an admin who cannot touch the owner.
    rejected(transfer(admin.actor_id), errors.NotOwner)
    accepted(transfer(admin.actor_id, as_=editor))
    rejected(team.run(pc.RemoveMember(workspace_id=team.me.tenant_id,
                                      account_id=admin.actor_id)), errors.Forbidden,
             "No permission to remove member.")
