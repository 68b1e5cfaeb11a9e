"""Command payloads (what the gateway asks the write side to do) and the command envelope."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict

AppMode = Literal["completion", "chat", "advanced-chat", "agent-chat", "workflow"]


class CommandPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    command_type: ClassVar[str]


class SetupPlatform(CommandPayload):
    command_type = "SetupPlatform"
    account_id: UUID
    workspace_id: UUID
    email: str
    name: str
    password_hash: str
    interface_language: str = "en-US"


class CreateApp(CommandPayload):
    command_type = "CreateApp"
    app_id: UUID
    name: str
    mode: AppMode
    description: str = ""
    icon_type: str = "emoji"
    icon: str = "🤖"
    icon_background: str = "#FFEAD5"


class UpdateApp(CommandPayload):
    command_type = "UpdateApp"
    app_id: UUID
    name: str | None = None
    description: str | None = None
    icon_type: str | None = None
    icon: str | None = None
    icon_background: str | None = None


class DeleteApp(CommandPayload):
    command_type = "DeleteApp"
    app_id: UUID


class CreateApiKey(CommandPayload):
    command_type = "CreateApiKey"
    key_id: UUID
    key_type: Literal["app", "dataset"]
    app_id: UUID | None = None
    token: str


class RevokeApiKey(CommandPayload):
    command_type = "RevokeApiKey"
    key_id: UUID
    key_type: Literal["app", "dataset"]
    app_id: UUID | None = None


@dataclass(frozen=True)
class CommandEnvelope:
    command_id: UUID
    type: str
    aggregate_id: UUID  # the partition key: one aggregate's commands are handled in order
    tenant_id: UUID | None
    actor_id: UUID | None
    correlation_id: UUID
    payload: dict[str, Any]
    issued_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(
        cls,
        payload: CommandPayload,
        *,
        aggregate_id: UUID,
        tenant_id: UUID | None,
        actor_id: UUID | None,
        correlation_id: UUID,
        command_id: UUID | None = None,
    ) -> CommandEnvelope:
        return cls(
            command_id=command_id or uuid4(),
            type=payload.command_type,
            aggregate_id=aggregate_id,
            tenant_id=tenant_id,
            actor_id=actor_id,
            correlation_id=correlation_id,
            payload=payload.model_dump(mode="json"),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__, default=str)

    @classmethod
    def from_json(cls, data: bytes) -> CommandEnvelope:
        raw = orjson.loads(data)

        def _uuid(value: str | None) -> UUID | None:
            return UUID(value) if value else None

        return cls(
            command_id=UUID(raw["command_id"]),
            type=raw["type"],
            aggregate_id=UUID(raw["aggregate_id"]),
            tenant_id=_uuid(raw["tenant_id"]),
            actor_id=_uuid(raw["actor_id"]),
            correlation_id=UUID(raw["correlation_id"]),
            payload=raw["payload"],
            issued_at=datetime.fromisoformat(raw["issued_at"]),
        )
