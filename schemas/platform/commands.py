"""Command payloads of the platform context."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from schemas.base import CommandPayload

AppMode = Literal["completion", "chat", "advanced-chat", "agent-chat", "workflow"]


class SetupPlatform(CommandPayload):
    account_id: UUID
    workspace_id: UUID
    email: str
    name: str
    password_hash: str
    interface_language: str = "en-US"


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


class CreateApiKey(CommandPayload):
    key_id: UUID
    key_type: Literal["app", "dataset"]
    app_id: UUID | None = None
    token: str


class RevokeApiKey(CommandPayload):
    key_id: UUID
    key_type: Literal["app", "dataset"]
    app_id: UUID | None = None
