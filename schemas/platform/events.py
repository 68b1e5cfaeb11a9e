"""Event payloads of the platform context (setup, accounts, workspaces, apps, API keys)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from schemas.base import EventPayload, Upcaster

# --- workspace context: setup, accounts, workspaces -------------------------------------


class SetupCompleted(EventPayload):
    account_id: UUID
    workspace_id: UUID


class AccountRegistered(EventPayload):
    email: str
    name: str
    password_hash: str
    interface_language: str = "en-US"
    timezone: str = "UTC"


class WorkspaceCreated(EventPayload):
    name: str
    owner_account_id: UUID


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
    key_type: str  # "app" | "dataset"
    app_id: UUID | None
    token: str


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


UPCASTERS: dict[tuple[type[EventPayload], int], Upcaster] = {
    (AppCreated, 1): _app_created_v1_to_v2,
}
