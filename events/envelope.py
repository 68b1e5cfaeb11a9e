"""The envelope every event travels in: from the event store, over topics, into projectors.

Its payload is the event's typed model (`schemas/<context>/events.py`), already upcast to the
current schema version; `EventTypes` decodes stored rows and topic messages into envelopes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

import orjson

from schemas.base import EventPayload

P = TypeVar("P", bound=EventPayload, covariant=True)  # an Envelope[X] is an Envelope[base]
Q = TypeVar("Q", bound=EventPayload)


@dataclass(frozen=True)
class Envelope(Generic[P]):
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
    payload: P
    # Global position in the event store; None until the event is stored.
    position: int | None = None
    # Set on a message `eddy events replay` sent (never stored): the replay's id.
    replay_id: str | None = None

    @staticmethod
    def new(
        payload: Q,
        *,
        aggregate_type: str,
        aggregate_id: UUID,
        aggregate_version: int,
        tenant_id: UUID | None,
        correlation_id: UUID,
        causation_id: UUID,
    ) -> Envelope[Q]:
        return Envelope(
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
            payload=payload,
        )

    def at(self, position: int) -> Envelope[P]:
        return replace(self, position=position)

    def payload_json(self) -> dict[str, Any]:
        return self.payload.model_dump(mode="json")

    def to_json(self) -> bytes:
        return orjson.dumps({**self.__dict__, "payload": self.payload_json()}, default=str)


def envelope_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The envelope's fields from its JSON form, except the payload (decoded by its type)."""
    return {
        "event_id": UUID(raw["event_id"]),
        "type": raw["type"],
        "tenant_id": UUID(raw["tenant_id"]) if raw["tenant_id"] else None,
        "aggregate_type": raw["aggregate_type"],
        "aggregate_id": UUID(raw["aggregate_id"]),
        "aggregate_version": raw["aggregate_version"],
        "occurred_at": datetime.fromisoformat(raw["occurred_at"]),
        "correlation_id": UUID(raw["correlation_id"]),
        "causation_id": UUID(raw["causation_id"]),
        "position": raw.get("position"),
        "replay_id": raw.get("replay_id"),
    }
