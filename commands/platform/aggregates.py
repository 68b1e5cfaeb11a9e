"""Platform aggregates: the one-time setup, accounts, workspaces, apps and API keys."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.aggregate import Aggregate, Context
from schemas.errors import (
    AccountAlreadyInTenant,
    AccountNotFound,
    AccountNotLinkTenant,
    AlreadyActivated,
    AlreadySetup,
    ApiKeyNotFound,
    AppNotFound,
    BadRequest,
    CannotOperateSelf,
    CannotTransferOwnerToSelf,
    EmailInUse,
    Forbidden,
    InvalidRole,
    MemberNotInTenant,
    NotFound,
    NotInWorkspace,
    NotOwner,
    RoleAlreadyAssigned,
    SecretChanged,
)
from schemas.platform import events as ev
from schemas.platform.commands import Resealed, SealedCredentials
from schemas.platform.providers import ProviderSpec, provider_spec
from schemas.platform.roles import ADMINS, ASSIGNABLE, OWNERS


class Setup(Aggregate):
    """The platform's one-time setup; its single version makes a second setup impossible."""

    def apply_SetupCompleted(self, p: ev.SetupCompleted) -> None:
        pass

    def complete(self, account_id: UUID, workspace_id: UUID, ctx: Context) -> None:
        if self.exists:
            raise AlreadySetup()
        self.record(ev.SetupCompleted(account_id=account_id, workspace_id=workspace_id), ctx)


class Account(Aggregate):
    status = "active"  # "pending": made for an invitation, not activated yet
    current_workspace: UUID | None = None
    name = ""
    language = "en-US"

    def apply_AccountRegistered(self, p: ev.AccountRegistered) -> None:
        self.email, self.name, self.language = p.email, p.name, p.interface_language

    def apply_PendingAccountCreated(self, p: ev.PendingAccountCreated) -> None:
        self.email, self.name, self.language = p.email, p.name, p.interface_language
        self.status = "pending"

    def apply_AccountActivated(self, p: ev.AccountActivated) -> None:
        self.status, self.name, self.language = "active", p.name, p.interface_language

    def apply_AccountPasswordChanged(self, p: ev.AccountPasswordChanged) -> None:
        pass

    def apply_CurrentWorkspaceSwitched(self, p: ev.CurrentWorkspaceSwitched) -> None:
        self.current_workspace = p.workspace_id

    def apply_AccountEmailChanged(self, p: ev.AccountEmailChanged) -> None:
        self.email = p.email

    def change_email(self, email: str, ctx: Context) -> None:
        """The caller claimed `email` first (EmailClaim) unless it derives this account's id."""
        if not self.exists:
            raise NotFound("Account not found.")
        if email != self.email.lower():
            self.record(ev.AccountEmailChanged(email=email), ctx)

    def _code_mail_requested(
            self, p: ev.PasswordResetRequested | ev.EmailCodeLoginRequested) -> None:
        """Nothing to keep: the code lives (hashed) in the gateway's key-value store."""

    apply_PasswordResetRequested = apply_EmailCodeLoginRequested = _code_mail_requested

    def ensure_active(self) -> None:
        """Codes and passwords are for activated accounts (an invited one activates through
        its invitation)."""
        if not self.exists or self.status != "active":
            raise AccountNotFound()

    def code_mail_requested(
            self, requested: ev.PasswordResetRequested | ev.EmailCodeLoginRequested,
            ctx: Context) -> None:
        """A code (reset or login) is mailed to the account: an active one only."""
        self.ensure_active()
        self.record(requested, ctx)

    def change_password(self, credentials_id: UUID, ctx: Context) -> None:
        self.ensure_active()
        self.record(ev.AccountPasswordChanged(credentials_id=credentials_id), ctx)

    def register(self, email: str, name: str, credentials_id: UUID, language: str,
                 ctx: Context) -> None:
        if self.exists:
            raise BadRequest("Account already exists.")
        if self.is_foreign:  # an EmailClaim: another account took this address over
            raise EmailInUse()
        self.record(
            ev.AccountRegistered(
                email=email, name=name, credentials_id=credentials_id,
                interface_language=language,
            ),
            ctx,
        )

    def create_pending(self, email: str, language: str, ctx: Context) -> None:
        """An account for an invited e-mail (named after its local part, as Dify does)."""
        if self.exists:
            raise BadRequest("Account already exists.")
        self.record(ev.PendingAccountCreated(email=email, name=email.split("@")[0],
                                             interface_language=language), ctx)

    def activate(self, name: str, language: str, timezone: str,
                 credentials_id: UUID | None, ctx: Context) -> None:
        if not self.exists or self.status != "pending":
            raise AlreadyActivated()
        self.record(ev.AccountActivated(name=name, interface_language=language,
                                        timezone=timezone, credentials_id=credentials_id), ctx)

    def switch_workspace(self, workspace: Workspace, ctx: Context) -> None:
        if not workspace.exists or workspace.role_of(self.id) is None:
            raise AccountNotLinkTenant()
        if self.current_workspace != workspace.id:  # else it works there already
            self.record(ev.CurrentWorkspaceSwitched(workspace_id=workspace.id), ctx,
                        tenant_id=workspace.id)


class EmailClaim(Aggregate):
    """An e-mail address an account took over by changing its e-mail (`eddy reset-email`).

    Account ids are derived from the e-mail an account registered with (`account_id_for`):
    that is how the store keeps one account per e-mail, because two registrations of one
    address both try version 1 of the same id. An account that changes its e-mail keeps its
    id, so the new address must be held some other way: an EmailClaim under the id derived
    from the new address. The store then refuses, as for any taken id, a later registration
    or invitation of that address (`Account` at an id another kind holds is "taken"), and
    two accounts changing to one address race for version 1 of the same claim. The claim is
    never released: the address stays the account's, and the old address stays tied to the
    account's id, so neither can name a second account. Logins find the account by its
    current e-mail in the read model."""

    holder: UUID | None = None

    def apply_EmailClaimed(self, p: ev.EmailClaimed) -> None:
        self.holder = p.account_id

    def claim(self, account_id: UUID, email: str, ctx: Context) -> None:
        if self.holder == account_id:
            return
        if self.exists or self.is_foreign:
            raise EmailInUse()
        self.record(ev.EmailClaimed(account_id=account_id, email=email), ctx)


class Workspace(Aggregate):
    """A workspace and its settings: the model providers it connected (credentials arrive
    sealed and validated by the gateway) and its default model per type."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.credentialed: set[str] = set()  # predefined-model providers with credentials
        self.custom_models: set[tuple[str, str, str]] = set()  # (provider, model, type)
        # their sealed credentials: provider -> ciphertext, (provider, model, type) -> ...
        self.sealed: dict[str | tuple[str, str, str], str] = {}
        self.defaults: dict[str, tuple[str, str]] = {}  # model type -> (provider, model)
        self.members: dict[UUID, str] = {}  # account id -> role (schemas.platform.roles)

    def apply_WorkspaceCreated(self, p: ev.WorkspaceCreated) -> None:
        self.name = p.name
        self.members[p.owner_account_id] = "owner"

    def apply_MemberInvited(self, p: ev.MemberInvited) -> None:
        self.members[p.account_id] = p.role

    def apply_MemberRoleUpdated(self, p: ev.MemberRoleUpdated) -> None:
        self.members[p.account_id] = p.role

    def apply_MemberRemoved(self, p: ev.MemberRemoved) -> None:
        self.members.pop(p.account_id, None)

    def role_of(self, account_id: UUID | None) -> str | None:
        return self.members.get(account_id) if account_id is not None else None

    # --- members (Dify's TenantService rules and messages) -------------------------------

    def _check_member_permission(self, action: str, member: UUID | None,
                                 ctx: Context) -> None:
        """The operator may `action` the member: admins add, only the owner changes and
        removes (Dify's TenantService.check_member_permission). The owner is never the
        target: it cannot operate itself."""
        self._ensure_mine(ctx)
        if member is not None and member == ctx.actor_id:
            raise CannotOperateSelf()
        if self.role_of(ctx.actor_id) not in (ADMINS if action == "add" else OWNERS):
            raise Forbidden(f"No permission to {action} member.")

    def invite(self, account: Account, role: str, mail_id: UUID, ctx: Context) -> bool:
        """The account joins with `role`, `mail_id` its invitation; False: it is a pending
        member already (the invitation is sent again, as Dify does; nothing else changes)."""
        if role not in ASSIGNABLE:
            raise InvalidRole()
        self._check_member_permission("add", None, ctx)
        if account.id in self.members:
            if account.status == "pending":
                return False
            raise AccountAlreadyInTenant()
        assert ctx.actor_id is not None
        self.record(ev.MemberInvited(account_id=account.id, email=account.email, role=role,
                                     invited_by=ctx.actor_id, mail_id=mail_id), ctx)
        return True

    def update_member_role(self, account_id: UUID, role: str, ctx: Context) -> None:
        if role not in ASSIGNABLE:
            raise InvalidRole()
        self._check_member_permission("update", account_id, ctx)
        current = self.role_of(account_id)
        if current is None:
            raise MemberNotInTenant()
        if current == role:
            raise RoleAlreadyAssigned()
        self.record(ev.MemberRoleUpdated(account_id=account_id, role=role), ctx)

    def ensure_owned_by_actor(self, ctx: Context) -> None:
        self._ensure_mine(ctx)
        if self.role_of(ctx.actor_id) != "owner":
            raise NotOwner()

    def transfer_ownership(self, account_id: UUID, ctx: Context) -> None:
        """The member becomes the owner; the owner (the actor) an admin, as in Dify."""
        self.ensure_owned_by_actor(ctx)
        if account_id == ctx.actor_id:
            raise CannotTransferOwnerToSelf()
        if self.role_of(account_id) is None:
            raise NotInWorkspace()
        assert ctx.actor_id is not None
        self.record(ev.MemberRoleUpdated(account_id=account_id, role="owner"), ctx)
        self.record(ev.MemberRoleUpdated(account_id=ctx.actor_id, role="admin"), ctx)

    def remove_member(self, account_id: UUID, ctx: Context) -> None:
        self._check_member_permission("remove", account_id, ctx)
        if self.role_of(account_id) is None:
            raise MemberNotInTenant()
        self.record(ev.MemberRemoved(account_id=account_id), ctx)

    def apply_ProviderCredentialsSaved(self, p: ev.ProviderCredentialsSaved) -> None:
        self.credentialed.add(p.provider)
        self.sealed[p.provider] = p.credentials_ciphertext

    def apply_ProviderCredentialsDeleted(self, p: ev.ProviderCredentialsDeleted) -> None:
        self.credentialed.discard(p.provider)
        self.sealed.pop(p.provider, None)

    def apply_CustomModelSaved(self, p: ev.CustomModelSaved) -> None:
        self.custom_models.add((p.provider, p.model, p.model_type))
        self.sealed[(p.provider, p.model, p.model_type)] = p.credentials_ciphertext

    def apply_CustomModelDeleted(self, p: ev.CustomModelDeleted) -> None:
        self.custom_models.discard((p.provider, p.model, p.model_type))
        self.sealed.pop((p.provider, p.model, p.model_type), None)

    def apply_ProviderCredentialsResealed(self, p: ev.ProviderCredentialsResealed) -> None:
        key = p.provider if p.model is None else (p.provider, p.model, p.model_type or "")
        self.sealed[key] = p.credentials_ciphertext

    def reseal_credentials(self, provider: str, model: str | None, model_type: str | None,
                           resealed: Resealed, ctx: Context) -> None:
        """The stored credentials, the same but sealed with the workspace's new key."""
        self._ensure_mine(ctx)
        key = provider if model is None else (provider, model, model_type or "")
        if self.sealed.get(key) != resealed.previous:
            raise SecretChanged()
        if resealed.ciphertext != resealed.previous:
            self.record(ev.ProviderCredentialsResealed(
                provider=provider, model=model, model_type=model_type,
                credentials_ciphertext=resealed.ciphertext), ctx)

    def apply_DefaultModelSet(self, p: ev.DefaultModelSet) -> None:
        self.defaults[p.model_type] = (p.provider, p.model)

    def create(self, name: str, owner_account_id: UUID, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("Workspace already exists.")
        self.record(
            ev.WorkspaceCreated(name=name, owner_account_id=owner_account_id), ctx,
            tenant_id=self.id,
        )

    def _ensure_mine(self, ctx: Context) -> None:
        if not self.exists or self.id != ctx.tenant_id:
            raise NotFound("Workspace not found.")

    def _spec(self, provider: str, method: str) -> ProviderSpec:
        spec = provider_spec(provider)
        if spec is None or spec.name != provider:
            raise BadRequest(f"Provider {provider} does not exist.")
        if method not in spec.configurate_methods:
            raise BadRequest(f"Provider {provider} does not support {method}.")
        return spec

    def save_provider_credentials(self, provider: str, sealed: SealedCredentials,
                                  ctx: Context) -> None:
        self._ensure_mine(ctx)
        self._spec(provider, "predefined-model")
        self.record(ev.ProviderCredentialsSaved(
            provider=provider, credentials_ciphertext=sealed.ciphertext,
            credentials_masked=sealed.masked), ctx)

    def delete_provider_credentials(self, provider: str, ctx: Context) -> None:
        self._ensure_mine(ctx)
        if provider in self.credentialed:
            self.record(ev.ProviderCredentialsDeleted(provider=provider), ctx)

    def save_custom_model(self, provider: str, model: str, model_type: str,
                          sealed: SealedCredentials, ctx: Context) -> None:
        self._ensure_mine(ctx)
        spec = self._spec(provider, "customizable-model")
        if model_type not in spec.model_types:
            raise BadRequest(f"Provider {provider} has no {model_type} models.")
        self.record(ev.CustomModelSaved(
            provider=provider, model=model, model_type=model_type,
            credentials_ciphertext=sealed.ciphertext, credentials_masked=sealed.masked), ctx)

    def delete_custom_model(self, provider: str, model: str, model_type: str,
                            ctx: Context) -> None:
        self._ensure_mine(ctx)
        if (provider, model, model_type) in self.custom_models:
            self.record(ev.CustomModelDeleted(provider=provider, model=model,
                                              model_type=model_type), ctx)

    def available(self, provider: str, model: str, model_type: str) -> bool:
        """A model this workspace can use: a custom model it saved, or one of a
        credentialed provider's types (any model name: providers add models faster than
        a list here could follow)."""
        spec = provider_spec(provider)
        return (provider, model, model_type) in self.custom_models or (
            spec is not None and provider in self.credentialed
            and model_type in spec.model_types)

    def set_default_model(self, model_type: str, provider: str, model: str,
                          ctx: Context) -> None:
        self._ensure_mine(ctx)
        if not self.available(provider, model, model_type):
            raise BadRequest(f"Model {model} ({model_type}) of provider {provider} is not "
                             "configured in this workspace.")
        if self.defaults.get(model_type) != (provider, model):
            self.record(ev.DefaultModelSet(model_type=model_type, provider=provider,
                                           model=model), ctx)


class App(Aggregate):
    deleted = False

    def apply_AppCreated(self, p: ev.AppCreated) -> None:
        self.state = p.model_dump(exclude={"created_by"})

    def apply_AppUpdated(self, p: ev.AppUpdated) -> None:
        self.state.update(p.model_dump(exclude={"updated_by"}))

    def apply_AppDeleted(self, p: ev.AppDeleted) -> None:
        self.deleted = True

    def ensure_visible_to(self, tenant_id: UUID | None) -> None:
        # Another workspace's app is indistinguishable from a missing one.
        if not self.exists or self.deleted or self.tenant_id != tenant_id:
            raise AppNotFound()

    def create(self, payload: ev.AppCreated, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("App already exists.")
        self.record(payload, ctx)

    def update(self, changes: dict[str, Any], ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        merged = {**self.state, **{k: v for k, v in changes.items() if v is not None}}
        fields = ("name", "description", "icon_type", "icon", "icon_background")
        if all(merged[f] == self.state.get(f) for f in fields):
            return  # nothing changes: no event
        assert ctx.actor_id is not None
        self.record(ev.AppUpdated(**{f: merged[f] for f in fields}, updated_by=ctx.actor_id), ctx)

    def delete(self, ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        assert ctx.actor_id is not None
        self.record(ev.AppDeleted(deleted_by=ctx.actor_id), ctx)


class ApiKey(Aggregate):
    revoked = False

    def apply_ApiKeyCreated(self, p: ev.ApiKeyCreated) -> None:
        self.key_type, self.app_id = p.key_type, p.app_id
        self.token_ciphertext = p.token_ciphertext

    def apply_ApiKeyTokenResealed(self, p: ev.ApiKeyTokenResealed) -> None:
        self.token_ciphertext = p.token_ciphertext

    def reseal_token(self, resealed: Resealed, ctx: Context) -> None:
        if not self.exists or self.revoked or self.tenant_id != ctx.tenant_id:
            raise ApiKeyNotFound()
        if self.token_ciphertext != resealed.previous:
            raise SecretChanged()
        if resealed.ciphertext != resealed.previous:
            self.record(ev.ApiKeyTokenResealed(token_ciphertext=resealed.ciphertext), ctx)

    def apply_ApiKeyRevoked(self, p: ev.ApiKeyRevoked) -> None:
        self.revoked = True

    def create(self, payload: ev.ApiKeyCreated, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("API key already exists.")
        self.record(payload, ctx)

    def revoke(self, key_type: str, app_id: UUID | None, ctx: Context) -> None:
        if (
            not self.exists
            or self.revoked
            or self.tenant_id != ctx.tenant_id
            or self.key_type != key_type
            or self.app_id != app_id
        ):
            raise ApiKeyNotFound()
        self.record(ev.ApiKeyRevoked(), ctx)
