"""The platform commands of the operator commands (`eddy reset-password`, `eddy
reset-email`): an account's new password row, its new e-mail and the claim that keeps
e-mails unique."""

from __future__ import annotations

from uuid import uuid4

from schemas import errors
from schemas.platform import commands as pc
from schemas.platform import events as pe
from schemas.platform.naming import account_id_for
from tests.unit.handlers.harness import World, accepted, covers, rejected, unchanged


def _register(world: World, email: str) -> None:
    world.given(pc.CreateWorkspace(
        workspace_id=uuid4(), name="W", owner_account_id=account_id_for(email),
        new_owner=pc.NewAccount(email=email, name="n", credentials_id=uuid4())))


@covers(pc.ChangePassword)
def test_a_password_change_names_the_new_credentials_row(world: World) -> None:
    _register(world, "ops@acme.test")
    account, credentials = account_id_for("ops@acme.test"), uuid4()
    changed = accepted(world.run(pc.ChangePassword(
        account_id=account, credentials_id=credentials)), account_id=str(account))
    assert changed.one(pe.AccountPasswordChanged) == pe.AccountPasswordChanged(
        credentials_id=credentials)
    assert changed.event(pe.AccountPasswordChanged).aggregate_id == account
    unknown = world.run(pc.ChangePassword(account_id=uuid4(), credentials_id=uuid4()))
    assert unknown.outcome.status == "rejected" and unknown.events == []
    assert unknown.outcome.error and unknown.outcome.error["message"] == "Account not found."


@covers(pc.ChangeAccountEmail)
def test_a_new_email_is_claimed_so_no_other_account_can_have_it(world: World) -> None:
    _register(world, "ops@acme.test")
    _register(world, "dev@acme.test")
    ops = account_id_for("ops@acme.test")
    changed = accepted(world.run(pc.ChangeAccountEmail(account_id=ops, email=" New@Acme.test")),
                       account_id=str(ops), email="new@acme.test")
    assert sorted(changed.types) == ["AccountEmailChanged", "EmailClaimed"]
    claim = changed.event(pe.EmailClaimed)
    assert claim.aggregate_id == account_id_for("new@acme.test")
    assert claim.payload == pe.EmailClaimed(account_id=ops, email="new@acme.test")
    assert changed.one(pe.AccountEmailChanged) == pe.AccountEmailChanged(email="new@acme.test")

    # the same address again changes nothing; another account cannot take it, nor an
    # address an account registered with; a registration of the claimed address is refused
    unchanged(world.run(pc.ChangeAccountEmail(account_id=ops, email="new@acme.test")))
    dev = account_id_for("dev@acme.test")
    rejected(world.run(pc.ChangeAccountEmail(account_id=dev, email="new@acme.test")),
             errors.EmailInUse)
    rejected(world.run(pc.ChangeAccountEmail(account_id=dev, email="ops@acme.test")),
             errors.EmailInUse)
    rejected(world.run(pc.CreateWorkspace(
        workspace_id=uuid4(), name="W", owner_account_id=account_id_for("new@acme.test"),
        new_owner=pc.NewAccount(email="new@acme.test", name="n", credentials_id=uuid4()))),
        errors.EmailInUse)
    # back to the address its id derives from: no claim needed
    back = accepted(world.run(pc.ChangeAccountEmail(account_id=ops, email="ops@acme.test")))
    assert back.types == ["AccountEmailChanged"]
    rejected(world.run(pc.ChangeAccountEmail(account_id=uuid4(), email="x@acme.test")),
             errors.NotFound, "Account not found.")


def test_an_invitation_of_a_claimed_email_reaches_the_account_that_took_it(
        world: World) -> None:
    _register(world, "ops@acme.test")
    ops = account_id_for("ops@acme.test")
    world.given(pc.ChangeAccountEmail(account_id=ops, email="new@acme.test"))
    workspace = world.workspace()
    invited = accepted(world.execute(pc.InviteMember(
        workspace_id=workspace, email="new@acme.test", role="editor",
        sealed_activation="sealed", signin_url="http://eddy.test/signin")))
    member = invited.one(pe.MemberInvited)
    assert (member.account_id, member.email) == (ops, "new@acme.test")
    assert "PendingAccountCreated" not in invited.types
