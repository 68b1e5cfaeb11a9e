"""The envelope every event travels in: from the event store, over topics, into projectors."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson

from schemas.events import EventPayload


@dataclass(frozen=True)
class Envelope:
    event_id: UUID
    type: str
    schema_version: int
    tenant_id: UUID | None
    aggregate_type: str
    aggregate_id: UUID
    aggregate_version: int
    occurred_at: datetime
    correlation_id: UUID
    causation_id: UUID
    payload: dict[str, Any]
    # Global position in the event store; None until the event is stored.
    position: int | None = None

    @classmethod
    def new(
        cls,
        payload: EventPayload,
        *,
        aggregate_type: str,
        aggregate_id: UUID,
        aggregate_version: int,
        tenant_id: UUID | None,
        correlation_id: UUID,
        causation_id: UUID,
    ) -> Envelope:
        return cls(
            event_id=uuid4(),
            type=payload.event_type,
            schema_version=payload.schema_version,
            tenant_id=tenant_id,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            aggregate_version=aggregate_version,
            occurred_at=datetime.now(UTC),
            correlation_id=correlation_id,
            causation_id=causation_id,
            payload=payload.model_dump(mode="json"),
        )

    def at(self, position: int) -> Envelope:
        return replace(self, position=position)

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__, default=str)

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        raw = orjson.loads(data)
        return cls(
            event_id=UUID(raw["event_id"]),
            type=raw["type"],
            schema_version=raw["schema_version"],
            tenant_id=UUID(raw["tenant_id"]) if raw["tenant_id"] else None,
            aggregate_type=raw["aggregate_type"],
            aggregate_id=UUID(raw["aggregate_id"]),
            aggregate_version=raw["aggregate_version"],
            occurred_at=datetime.fromisoformat(raw["occurred_at"]),
            correlation_id=UUID(raw["correlation_id"]),
            causation_id=UUID(raw["causation_id"]),
            payload=raw["payload"],
            position=raw.get("position"),
        )
