"""Command payloads of the platform context."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import CommandPayload
from schemas.platform.providers import ModelType

AppMode = Literal["completion", "chat", "advanced-chat", "agent-chat", "workflow"]


class SetupPlatform(CommandPayload):
    account_id: UUID
    workspace_id: UUID
    email: str
    name: str
    # Commands travel on a topic, so never the password's hash: the gateway stored it in
    # `account_credentials` under this id (generated, like the other ids here).
    credentials_id: UUID
    interface_language: str = "en-US"


class NewAccount(BaseModel):
    """An account to register with the command (its password already stored by the caller
    under `credentials_id`, as for SetupPlatform)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    email: str
    name: str
    credentials_id: UUID
    interface_language: str = "en-US"


class CreateWorkspace(CommandPayload):
    """A workspace owned by `owner_account_id` (`eddy create-tenant`); `new_owner`: the
    owner's account is new and registered with it, else it must exist."""

    workspace_id: UUID
    name: str
    owner_account_id: UUID
    new_owner: NewAccount | None = None


class RequestPasswordReset(CommandPayload):
    """Mail the account a password reset code (forgot password). The code reaches the mail
    only sealed (`gateway.mail.seal_mail_params`); the gateway keeps its hash."""

    account_id: UUID
    language: str
    sealed_params: str
    expiry_minutes: int  # how long the code lives, as the mail says


class RequestEmailCodeLogin(CommandPayload):
    """Mail the account a login code (e-mail code login); sealed as for a reset code."""

    account_id: UUID
    language: str
    sealed_params: str
    expiry_minutes: int


class ChangePassword(CommandPayload):
    """The account's password is now the one stored (by the gateway, `gateway.auth.
    store_credentials`) under `credentials_id`: changed by its owner, reset by a code or by
    `eddy reset-password`."""

    account_id: UUID
    credentials_id: UUID


class ChangeAccountEmail(CommandPayload):
    """`eddy reset-email`: the account logs in with `email` from now on (see
    `commands.platform.aggregates.EmailClaim` for how the address stays unique)."""

    account_id: UUID
    email: str = Field(min_length=3, max_length=255)
# --- members (the workspace's; the account's own current workspace and activation) -------


class InviteMember(CommandPayload):
    """One invited e-mail (lowercase): a pending account is made for a new one; the account
    joins the workspace with `role` and is sent the invitation mail."""

    workspace_id: UUID
    email: str
    role: str
    language: str = "en-US"  # a new account's interface language (and its mail's)
    # The activation link (with its token) as the mail processor gets it: sealed by the
    # gateway (gateway.mail.seal_mail_params), never in plaintext past it.
    sealed_activation: str
    signin_url: str  # the link for an account that is active already


class UpdateMemberRole(CommandPayload):
    workspace_id: UUID
    account_id: UUID
    role: str


class RemoveMember(CommandPayload):
    workspace_id: UUID
    account_id: UUID


class RequestOwnerTransferCode(CommandPayload):
    """Mail the workspace's owner the code that confirms a transfer of ownership (sealed by
    the gateway, which keeps its hash)."""

    workspace_id: UUID
    language: str
    sealed_params: str
    expiry_minutes: int  # how long the code lives, as the mail says


class TransferOwnership(CommandPayload):
    """The acting owner makes the member `account_id` the owner and becomes an admin (the
    gateway checked the confirmed code's token); both are told by mail."""

    workspace_id: UUID
    account_id: UUID


class SwitchWorkspace(CommandPayload):
    """The acting account's console works in `workspace_id` from now on."""

    account_id: UUID
    workspace_id: UUID


class ActivateAccount(CommandPayload):
    """An invited (pending) account completes its profile; the gateway checked the
    invitation's token and stored the password, if one was chosen, under `credentials_id`."""

    account_id: UUID
    name: str
    interface_language: str
    timezone: str
    credentials_id: UUID | None = None


class CreateApp(CommandPayload):
    app_id: UUID
    name: str
    mode: AppMode
    description: str = ""
    icon_type: str = "emoji"
    icon: str = "🤖"
    icon_background: str = "#FFEAD5"


class UpdateApp(CommandPayload):
    app_id: UUID
    name: str | None = None
    description: str | None = None
    icon_type: str | None = None
    icon: str | None = None
    icon_background: str | None = None


class DeleteApp(CommandPayload):
    app_id: UUID


class SealedToken(BaseModel):
    """An API token as everything past the gateway sees it (commands travel on a topic):
    never the token itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")  # for lookup
    ciphertext: str  # for the console to show it; only the gateway holds the key
    hint: str = Field(max_length=64)  # masked, for when it cannot be shown


class Resealed(BaseModel):
    """A stored secret sealed again with its workspace's new key (`eddy
    reset-encrypt-key-pair`): `previous` is the ciphertext it replaces, so a secret saved
    again meanwhile is never overwritten with an older one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    previous: str
    ciphertext: str


class ResealApiKeyToken(CommandPayload):
    key_id: UUID
    token: Resealed


class ResealProviderCredentials(CommandPayload):
    """A provider's credentials (no `model`) or a custom model's, re-sealed."""

    workspace_id: UUID
    provider: str
    model: str | None = None
    model_type: ModelType | None = None
    credentials: Resealed


class CreateApiKey(CommandPayload):
    key_id: UUID
    key_type: Literal["app", "dataset"]
    app_id: UUID | None = None
    # Named `token`: generated by the gateway, so an Idempotency-Key's request hash skips it.
    token: SealedToken


class RevokeApiKey(CommandPayload):
    key_id: UUID
    key_type: Literal["app", "dataset"]
    app_id: UUID | None = None


# --- model providers (workspace settings) ------------------------------------------------


class SealedCredentials(BaseModel):
    """Provider credentials as everything past the gateway sees them: sealed with the
    workspace's key, and masked (secret fields obfuscated) for display."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ciphertext: str
    masked: dict[str, Any]


class SaveProviderCredentials(CommandPayload):
    """A predefined-model provider's credentials (`openai`), validated by the gateway."""

    workspace_id: UUID
    provider: str  # canonical (plugin-style) name
    credentials: SealedCredentials


class DeleteProviderCredentials(CommandPayload):
    workspace_id: UUID
    provider: str


class SaveCustomModel(CommandPayload):
    """A customizable-model provider's model (`openai_api_compatible`) with its own
    credentials, validated by the gateway."""

    workspace_id: UUID
    provider: str
    model: str = Field(min_length=1, max_length=255)
    model_type: ModelType
    credentials: SealedCredentials


class DeleteCustomModel(CommandPayload):
    workspace_id: UUID
    provider: str
    model: str
    model_type: ModelType


class DefaultModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model_type: ModelType
    provider: str
    model: str


class SetDefaultModels(CommandPayload):
    workspace_id: UUID
    settings: list[DefaultModel]
