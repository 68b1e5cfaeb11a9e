"""Versioned event payload schemas, and the upcasters that lift old versions on read.

An event's payload is validated against `(type, schema_version)` when recorded. Stored events
are never rewritten: an event stored under an older schema version is upcast, step by step,
to the current version whenever it is read (by aggregates, the relay and projectors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class EventPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


# --- workspace context: setup, accounts, workspaces -------------------------------------


class SetupCompleted(EventPayload):
    event_type = "SetupCompleted"
    account_id: UUID
    workspace_id: UUID


class AccountRegistered(EventPayload):
    event_type = "AccountRegistered"
    email: str
    name: str
    password_hash: str
    interface_language: str = "en-US"
    timezone: str = "UTC"


class WorkspaceCreated(EventPayload):
    event_type = "WorkspaceCreated"
    name: str
    owner_account_id: UUID


# --- apps context: apps and API keys ----------------------------------------------------


class AppCreated(EventPayload):
    """v2 split v1's single `icon` string into Dify's icon_type / icon / icon_background."""

    event_type = "AppCreated"
    schema_version = 2
    name: str
    mode: str
    description: str = ""
    icon_type: str = "emoji"
    icon: str = "🤖"
    icon_background: str = "#FFEAD5"
    created_by: UUID


class AppUpdated(EventPayload):
    event_type = "AppUpdated"
    name: str
    description: str
    icon_type: str
    icon: str
    icon_background: str
    updated_by: UUID


class AppDeleted(EventPayload):
    event_type = "AppDeleted"
    deleted_by: UUID


class ApiKeyCreated(EventPayload):
    event_type = "ApiKeyCreated"
    key_type: str  # "app" | "dataset"
    app_id: UUID | None
    token: str


class ApiKeyRevoked(EventPayload):
    event_type = "ApiKeyRevoked"


PAYLOADS: dict[str, type[EventPayload]] = {
    cls.event_type: cls
    for cls in (
        SetupCompleted,
        AccountRegistered,
        WorkspaceCreated,
        AppCreated,
        AppUpdated,
        AppDeleted,
        ApiKeyCreated,
        ApiKeyRevoked,
    )
}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


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


# (event type, from version) -> function producing the payload of version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("AppCreated", 1): _app_created_v1_to_v2,
}


class UnknownEventType(Exception):
    pass


def upcast(event_type: str, version: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Lift a stored payload to the current schema version of its event type."""
    schema = PAYLOADS.get(event_type)
    if schema is None:
        raise UnknownEventType(event_type)
    while version < schema.schema_version:
        payload = UPCASTERS[(event_type, version)](dict(payload))
        version += 1
    return version, payload
