"""What every context's contracts are built on: event and command payloads, the command
envelope, request bodies. A payload's type name is its class name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict, model_validator

# Namespace for ids derived from natural keys (singletons, e-mails, unique names).
EDDY_NAMESPACE = UUID("5f0c3a4e-6c1b-4d8a-9a57-0e2f1d7b9c11")


class EventPayload(BaseModel):
    """An event's payload; `schema_version` rises when its shape changes (see upcasters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.event_type = cls.__name__


# An upcaster lifts a stored payload of version N to version N + 1.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class CommandPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    command_type: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.command_type = cls.__name__


INT64 = range(-(2**63), 2**63)


def _beyond_int64(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return value not in INT64
    if isinstance(value, dict):
        return any(_beyond_int64(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_beyond_int64(v) for v in value)
    return False


class Body(BaseModel):
    """An HTTP request body: unknown fields are ignored, as Dify does."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _integers_fit_64_bits(cls, data: Any) -> Any:
        # Everywhere in the body, free-form parts included: a wider integer is refused here
        # rather than failing later in Postgres, orjson or a stored event.
        if _beyond_int64(data):
            raise ValueError("integers must fit in 64 bits")
        return data


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
