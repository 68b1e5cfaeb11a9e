"""Command handlers of the platform context: setup, workspaces and members, apps, API keys.

A handler gets the command payload and a unit of work; it returns the result the gateway
answers with. Raising an EddyError rejects the command and records nothing.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.mail.aggregates import request_mail
from commands.platform.aggregates import Account, ApiKey, App, EmailClaim, Setup, Workspace
from commands.registry import command_handlers
from commands.unit_of_work import UnitOfWork
from schemas.errors import AccountNotLinkTenant, NotFound
from schemas.mail.events import MailTemplate
from schemas.mail.naming import mail_id_for
from schemas.platform import commands as cmd
from schemas.platform import events as ev
from schemas.platform.naming import SETUP_ID, account_id_for


def setup_platform(c: cmd.SetupPlatform, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Setup, SETUP_ID).complete(c.account_id, c.workspace_id, uow.ctx)
    uow.get(Account, c.account_id).register(
        c.email, c.name, c.credentials_id, c.interface_language, uow.ctx
    )
    uow.get(Workspace, c.workspace_id).create(f"{c.name}'s Workspace", c.account_id, uow.ctx)
    return {"account_id": str(c.account_id), "workspace_id": str(c.workspace_id)}


def create_workspace(c: cmd.CreateWorkspace, uow: UnitOfWork) -> dict[str, Any]:
    owner = uow.get(Account, c.owner_account_id)
    if c.new_owner is not None:
        r = c.new_owner
        owner.register(r.email, r.name, r.credentials_id, r.interface_language, uow.ctx)
    elif not owner.exists:
        raise NotFound("Account not found.")
    uow.get(Workspace, c.workspace_id).create(c.name, c.owner_account_id, uow.ctx)
    return {"workspace_id": str(c.workspace_id), "account_id": str(c.owner_account_id)}


# --- account flows: forgot password, e-mail code login, password change ---------------------


def request_password_reset(c: cmd.RequestPasswordReset, uow: UnitOfWork) -> dict[str, Any]:
    return _mail_code(c, "reset_password", ev.PasswordResetRequested, uow)


def request_email_code_login(c: cmd.RequestEmailCodeLogin, uow: UnitOfWork) -> dict[str, Any]:
    return _mail_code(c, "email_code_login", ev.EmailCodeLoginRequested, uow)


def _mail_code(c: cmd.RequestPasswordReset | cmd.RequestEmailCodeLogin,
               template: MailTemplate,
               requested: type[ev.PasswordResetRequested] | type[ev.EmailCodeLoginRequested],
               uow: UnitOfWork) -> dict[str, Any]:
    """Mail the account its sealed code. The account records first: it refuses one that is
    not active before a mail is asked for (the mail's id is known ahead: `mail_id_for`)."""
    account = uow.get(Account, c.account_id)
    mail_id = mail_id_for(uow.ctx.causation_id, template)
    account.code_mail_requested(requested(mail_id=mail_id), uow.ctx)
    request_mail(uow, template, template, account.email, language=c.language,
                 params={"expiry_minutes": c.expiry_minutes}, sealed_params=c.sealed_params)
    return {"mail_id": str(mail_id)}


def change_password(c: cmd.ChangePassword, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Account, c.account_id).change_password(c.credentials_id, uow.ctx)
    return {"account_id": str(c.account_id)}


def change_account_email(c: cmd.ChangeAccountEmail, uow: UnitOfWork) -> dict[str, Any]:
    """The new address is claimed first unless it is the one the account's id derives from
    (`EmailClaim` says why); an account registered under that address holds its id, and
    the claim refuses it."""
    email = c.email.strip().lower()
    account = uow.get(Account, c.account_id)
    if not account.exists:
        raise NotFound("Account not found.")
    claim_id = account_id_for(email)
    if claim_id != c.account_id and email != account.email.lower():
        uow.get(EmailClaim, claim_id).claim(c.account_id, email, uow.ctx)
    account.change_email(email, uow.ctx)
    return {"account_id": str(c.account_id), "email": email}


# --- members ---------------------------------------------------------------------------------

INVITATION = "invite"  # the invitation mail's purpose (one per InviteMember command)


def account_for_email(uow: UnitOfWork, email: str) -> Account:
    """The account with this e-mail: the one whose id derives from it, or the one that took
    the address over (`EmailClaim`, `eddy reset-email`); a new one (not existing) if none."""
    account = uow.get(Account, account_id_for(email))
    if account.is_foreign:
        claim = uow.get(EmailClaim, account.id)
        if claim.holder is not None:
            return uow.get(Account, claim.holder)
    return account


def invite_member(c: cmd.InviteMember, uow: UnitOfWork) -> dict[str, Any]:
    account = account_for_email(uow, c.email)
    workspace = uow.get(Workspace, c.workspace_id)
    if not account.exists:  # a refused invitation records none of it
        account.create_pending(c.email, c.language, uow.ctx)
    mail_id = mail_id_for(uow.ctx.causation_id, INVITATION)
    joined = workspace.invite(account, c.role, mail_id, uow.ctx)
    inviter = uow.get(Account, uow.ctx.actor_id) if uow.ctx.actor_id else None
    params = {"inviter_name": inviter.name if inviter else "Dify",
              "workspace_name": workspace.name}
    # A pending account activates through the link; an active one only signs in.
    pending = account.status == "pending"
    request_mail(uow, INVITATION, "invite_member", account.email, language=account.language,
                 params=params if pending else {**params, "url": c.signin_url},
                 sealed_params=c.sealed_activation if pending else None)
    return {"account_id": str(account.id), "activation": pending, "joined": joined}


def update_member_role(c: cmd.UpdateMemberRole, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Workspace, c.workspace_id).update_member_role(c.account_id, c.role, uow.ctx)
    return {"result": "success"}


def remove_member(c: cmd.RemoveMember, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Workspace, c.workspace_id).remove_member(c.account_id, uow.ctx)
    return {"result": "success"}


def request_owner_transfer_code(c: cmd.RequestOwnerTransferCode,
                                uow: UnitOfWork) -> dict[str, Any]:
    workspace = uow.get(Workspace, c.workspace_id)
    workspace.ensure_owned_by_actor(uow.ctx)
    assert uow.ctx.actor_id is not None
    owner = uow.get(Account, uow.ctx.actor_id)
    mail_id = request_mail(uow, "owner_transfer_confirm", "owner_transfer_confirm",
                           owner.email, language=c.language,
                           params={"WorkspaceName": workspace.name,
                                   "expiry_minutes": c.expiry_minutes},
                           sealed_params=c.sealed_params)
    return {"mail_id": str(mail_id)}


def transfer_ownership(c: cmd.TransferOwnership, uow: UnitOfWork) -> dict[str, Any]:
    workspace = uow.get(Workspace, c.workspace_id)
    workspace.transfer_ownership(c.account_id, uow.ctx)
    assert uow.ctx.actor_id is not None
    new, old = uow.get(Account, c.account_id), uow.get(Account, uow.ctx.actor_id)
    request_mail(uow, "owner_transfer_new", "owner_transfer_new_notify", new.email,
                 language=new.language, params={"WorkspaceName": workspace.name})
    request_mail(uow, "owner_transfer_old", "owner_transfer_old_notify", old.email,
                 language=old.language,
                 params={"WorkspaceName": workspace.name, "NewOwnerEmail": new.email})
    return {"result": "success"}


def switch_workspace(c: cmd.SwitchWorkspace, uow: UnitOfWork) -> dict[str, Any]:
    if c.account_id != uow.ctx.actor_id:
        raise AccountNotLinkTenant()  # an account switches only itself
    uow.get(Account, c.account_id).switch_workspace(uow.get(Workspace, c.workspace_id),
                                                    uow.ctx)
    return {"workspace_id": str(c.workspace_id)}


def activate_account(c: cmd.ActivateAccount, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Account, c.account_id).activate(c.name, c.interface_language, c.timezone,
                                            c.credentials_id, uow.ctx)
    return {"account_id": str(c.account_id)}


def create_app(c: cmd.CreateApp, uow: UnitOfWork) -> dict[str, Any]:
    assert uow.ctx.actor_id is not None
    payload = ev.AppCreated(
        **c.model_dump(exclude={"app_id"}), created_by=uow.ctx.actor_id
    )
    uow.get(App, c.app_id).create(payload, uow.ctx)
    return {"app_id": str(c.app_id)}


def update_app(c: cmd.UpdateApp, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).update(c.model_dump(exclude={"app_id"}), uow.ctx)
    return {"app_id": str(c.app_id)}


def delete_app(c: cmd.DeleteApp, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).delete(uow.ctx)
    return {"app_id": str(c.app_id)}


def _ensure_owner_resource(app_id: UUID | None, uow: UnitOfWork) -> None:
    if app_id is not None:
        uow.get(App, app_id).ensure_visible_to(uow.ctx.tenant_id)


def create_api_key(c: cmd.CreateApiKey, uow: UnitOfWork) -> dict[str, Any]:
    _ensure_owner_resource(c.app_id, uow)
    payload = ev.ApiKeyCreated(key_type=c.key_type, app_id=c.app_id, token_hash=c.token.sha256,
                               token_ciphertext=c.token.ciphertext, token_hint=c.token.hint)
    uow.get(ApiKey, c.key_id).create(payload, uow.ctx)
    return {"key_id": str(c.key_id)}


def revoke_api_key(c: cmd.RevokeApiKey, uow: UnitOfWork) -> dict[str, Any]:
    _ensure_owner_resource(c.app_id, uow)
    uow.get(ApiKey, c.key_id).revoke(c.key_type, c.app_id, uow.ctx)
    return {"key_id": str(c.key_id)}


# --- model providers -------------------------------------------------------------------------


def save_provider_credentials(c: cmd.SaveProviderCredentials, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Workspace, c.workspace_id).save_provider_credentials(c.provider, c.credentials,
                                                                 uow.ctx)
    return {"result": "success"}


def delete_provider_credentials(c: cmd.DeleteProviderCredentials,
                                uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Workspace, c.workspace_id).delete_provider_credentials(c.provider, uow.ctx)
    return {"result": "success"}


def save_custom_model(c: cmd.SaveCustomModel, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Workspace, c.workspace_id).save_custom_model(c.provider, c.model, c.model_type,
                                                         c.credentials, uow.ctx)
    return {"result": "success"}


def delete_custom_model(c: cmd.DeleteCustomModel, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Workspace, c.workspace_id).delete_custom_model(c.provider, c.model, c.model_type,
                                                           uow.ctx)
    return {"result": "success"}


def reseal_provider_credentials(c: cmd.ResealProviderCredentials,
                                uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Workspace, c.workspace_id).reseal_credentials(c.provider, c.model, c.model_type,
                                                          c.credentials, uow.ctx)
    return {"result": "success"}


def reseal_api_key_token(c: cmd.ResealApiKeyToken, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(ApiKey, c.key_id).reseal_token(c.token, uow.ctx)
    return {"key_id": str(c.key_id)}


def set_default_models(c: cmd.SetDefaultModels, uow: UnitOfWork) -> dict[str, Any]:
    workspace = uow.get(Workspace, c.workspace_id)
    for setting in c.settings:  # all or none: a refused one records nothing
        workspace.set_default_model(setting.model_type, setting.provider, setting.model,
                                    uow.ctx)
    return {"result": "success"}


HANDLERS = command_handlers(
    setup_platform, create_workspace, change_account_email, invite_member, update_member_role,
    remove_member, request_owner_transfer_code, transfer_ownership, switch_workspace,
    activate_account, request_password_reset, request_email_code_login, change_password,
    create_app, update_app, delete_app, create_api_key, revoke_api_key,
    save_provider_credentials, delete_provider_credentials, save_custom_model,
    delete_custom_model, set_default_models, reseal_provider_credentials, reseal_api_key_token,
)
