"""Event payloads of the platform context (setup, accounts, workspaces, apps, API keys)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from schemas.base import EventPayload, Upcaster
from schemas.platform.naming import account_id_for, api_token_hash, api_token_hint

# --- workspace context: setup, accounts, workspaces -------------------------------------


class SetupCompleted(EventPayload):
    account_id: UUID
    workspace_id: UUID


class AccountRegistered(EventPayload):
    """v2 no longer carries the password's hash (v1 did, onto the topics, into dead letters
    and `eddy events show`): it names the row of `account_credentials` that holds it, a
    table beside the store that no read-model rebuild touches."""

    schema_version = 2
    email: str
    name: str
    credentials_id: UUID
    interface_language: str = "en-US"
    timezone: str = "UTC"


class WorkspaceCreated(EventPayload):
    name: str
    owner_account_id: UUID


class PendingAccountCreated(EventPayload):
    """An account made for an invited e-mail: it cannot log in until it is activated."""

    email: str
    name: str
    interface_language: str = "en-US"


class AccountActivated(EventPayload):
    """An invited account finished its activation (`POST /console/api/activate`);
    `credentials_id` names its password's row when it chose one there."""

    name: str
    interface_language: str
    timezone: str
    credentials_id: UUID | None = None


class AccountPasswordChanged(EventPayload):
    """By its owner, a reset code, or `eddy reset-password`: the row of
    `account_credentials` that now holds the hash (never the hash itself)."""

    credentials_id: UUID


class AccountEmailChanged(EventPayload):
    """The account's login e-mail (lowercase) is now this one; its id stays the one derived
    from the e-mail it registered with."""

    email: str


class EmailClaimed(EventPayload):
    """On the EmailClaim whose id is derived from an e-mail (`account_id_for`): this account
    took the address over, so no account can be registered or invited under it."""

    account_id: UUID
    email: str


class PasswordResetRequested(EventPayload):
    """A reset code went to the account's e-mail in this mail (never the code: the gateway
    keeps only its hash, the mail carries it sealed)."""

    mail_id: UUID


class EmailCodeLoginRequested(EventPayload):
    """A login code went to the account's e-mail in this mail (never the code)."""

    mail_id: UUID


class CurrentWorkspaceSwitched(EventPayload):
    workspace_id: UUID


class MemberInvited(EventPayload):
    """On the workspace: the account (pending if it was made for the invitation) joins with
    this role. `mail_id`: the invitation's Mail (its delivery shows on the member)."""

    account_id: UUID
    email: str
    role: str
    invited_by: UUID
    mail_id: UUID | None = None


class MemberRoleUpdated(EventPayload):
    account_id: UUID
    role: str


class MemberRemoved(EventPayload):
    account_id: UUID


class ProviderCredentialsSaved(EventPayload):
    """A predefined-model provider's credentials: sealed with the workspace's key, and the
    masked form the console shows. Never the secret itself."""

    provider: str
    credentials_ciphertext: str
    credentials_masked: dict[str, Any]


class ProviderCredentialsResealed(EventPayload):
    """The same credentials sealed with the workspace's new key (`eddy
    reset-encrypt-key-pair`); `model` and `model_type` name a custom model's."""

    provider: str
    model: str | None = None
    model_type: str | None = None
    credentials_ciphertext: str


class ProviderCredentialsDeleted(EventPayload):
    provider: str


class CustomModelSaved(EventPayload):
    provider: str
    model: str
    model_type: str
    credentials_ciphertext: str
    credentials_masked: dict[str, Any]


class CustomModelDeleted(EventPayload):
    provider: str
    model: str
    model_type: str


class DefaultModelSet(EventPayload):
    model_type: str
    provider: str
    model: str


# --- apps context: apps and API keys ----------------------------------------------------


class AppCreated(EventPayload):
    """v2 split v1's single `icon` string into Dify's icon_type / icon / icon_background."""

    schema_version = 2
    name: str
    mode: str
    description: str = ""
    icon_type: str = "emoji"
    icon: str = "🤖"
    icon_background: str = "#FFEAD5"
    created_by: UUID


class AppUpdated(EventPayload):
    name: str
    description: str
    icon_type: str
    icon: str
    icon_background: str
    updated_by: UUID


class AppDeleted(EventPayload):
    deleted_by: UUID


class ApiKeyCreated(EventPayload):
    """v2 no longer carries the token (v1 did, in plaintext, onto the topics): its sha256 for
    lookup, its ciphertext for the console to show it (key derived from SECRET_KEY, opened
    only by the gateway; None for keys created as v1) and a masked hint."""

    schema_version = 2
    key_type: str  # "app" | "dataset"
    app_id: UUID | None
    token_hash: str
    token_ciphertext: str | None = None
    token_hint: str


class ApiKeyTokenResealed(EventPayload):
    """The same token sealed with the workspace's new key (`eddy reset-encrypt-key-pair`)."""

    token_ciphertext: str


class ApiKeyRevoked(EventPayload):
    """The key stops working; its row goes from the read model."""


def _app_created_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 stored an emoji or an image URL in `icon`; v2 says which it is.
    icon = payload.pop("icon", "🤖") or "🤖"
    is_image = icon.startswith(("http://", "https://"))
    return {
        **payload,
        "icon_type": "image" if is_image else "emoji",
        "icon": icon,
        "icon_background": payload.pop("icon_background", "#FFEAD5"),
    }


def _api_key_created_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Upcasters are pure (no settings), so the plaintext cannot be encrypted here: it is
    # dropped, keeping what needs no key. Such keys still authenticate; the console shows
    # their hint. Migration 0004 rewrites stored v1 events into exactly this form.
    token = payload.pop("token")
    return {**payload, "token_hash": api_token_hash(token), "token_ciphertext": None,
            "token_hint": api_token_hint(token)}


def _account_registered_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Migration 0016 moved each v1 hash into `account_credentials` under the account's own
    # id (derived from the e-mail) and rewrote the stored events into exactly this form.
    payload.pop("password_hash", None)
    return {**payload, "credentials_id": str(account_id_for(payload["email"]))}


UPCASTERS: dict[tuple[type[EventPayload], int], Upcaster] = {
    (AppCreated, 1): _app_created_v1_to_v2,
    (AccountRegistered, 1): _account_registered_v1_to_v2,
    (ApiKeyCreated, 1): _api_key_created_v1_to_v2,
}
