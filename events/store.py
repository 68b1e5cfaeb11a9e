"""The event store: what the write side, the relay and the workers need of it.

Two implementations keep the same contract (tests/integration/test_event_store.py):
`PostgresEventStore` (production) and `InMemoryEventStore` (the fast unit tier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import orjson

from events.envelope import Envelope
from schemas.base import EventPayload

OUTCOME_CHANNEL = "eddy_command_outcome"


class ConcurrencyConflict(Exception):
    """Another writer saved a version of the aggregate first; decide again."""


class CommandAlreadyRecorded(Exception):
    """The command's outcome already exists: a duplicate delivery, nothing to do."""


@dataclass(frozen=True)
class CommandOutcome:
    command_id: UUID
    status: str  # "accepted" | "rejected"
    aggregate_id: UUID | None
    aggregate_version: int | None
    position: int | None
    result: dict[str, Any]
    error: dict[str, Any] | None


class EventStore(Protocol):
    """Synchronous; async callers use it through a thread."""

    def load(self, aggregate_id: UUID) -> list[Envelope[EventPayload]]:
        """One aggregate's events in version order (positions not set)."""
        ...

    def append(self, events: Sequence[Envelope[EventPayload]],
               outcome: CommandOutcome | None = None) -> int:
        """Store events (and the outcome of the command that caused them) atomically;
        returns the last position. ConcurrencyConflict when an aggregate version is taken,
        CommandAlreadyRecorded when the outcome exists."""
        ...

    def record_without_events(self, outcome: CommandOutcome) -> None:
        """Store the outcome of a command that recorded nothing (kept if one exists)."""
        ...

    def outcome(self, command_id: UUID) -> CommandOutcome | None: ...

    def read_from(self, after_position: int, limit: int) -> list[Envelope[EventPayload]]:
        """Events after a global position, in position order."""
        ...

    def max_position(self) -> int: ...

    def close(self) -> None: ...


def outcome_from_row(row: Any) -> CommandOutcome:
    def _json(value: Any) -> Any:
        return orjson.loads(value) if isinstance(value, str | bytes) else value

    return CommandOutcome(
        command_id=row["command_id"],
        status=row["status"],
        aggregate_id=row["aggregate_id"],
        aggregate_version=row["aggregate_version"],
        position=row["position"],
        result=_json(row["result"]) or {},
        error=_json(row["error"]),
    )
