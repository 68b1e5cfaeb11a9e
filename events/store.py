"""The event store: what the write side, the relay and the workers need of it.

Two implementations keep the same contract (tests/contracts/event_store.py):
`PostgresEventStore` (production) and `InMemoryEventStore` (the fast unit tier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
    # Every aggregate the command wrote: id -> (type, version); what read-your-writes waits for.
    aggregates: dict[UUID, tuple[str, int]] = field(default_factory=dict)
    # The workspace that sent the command: only its credentials read the outcome.
    tenant_id: UUID | None = None


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

    def append_batch(self, entries: Sequence[tuple[Sequence[Envelope[EventPayload]],
                                                   CommandOutcome]]) -> list[int | None]:
        """Group commit: several commands' events and outcomes in one transaction, all or
        nothing; each outcome's position (None for one without events). Raises as `append`
        does when any part conflicts."""
        ...

    def record_without_events(self, outcome: CommandOutcome) -> None:
        """Store the outcome of a command that recorded nothing (kept if one exists)."""
        ...

    def outcome(self, command_id: UUID) -> CommandOutcome | None: ...

    def read_from(self, after_position: int, limit: int) -> list[Envelope[EventPayload]]:
        """Events after a global position, in position order."""
        ...

    def max_position(self) -> int: ...

    def events_naming(self, event_types: Sequence[str], field: str,
                      value: UUID) -> list[Envelope[EventPayload]]:
        """The events of these types whose payload's `field` is `value`, in position order:
        what belongs to something, as the store (never a read model, which may lag) says,
        such as the conversations an app started. Every stored version of these events
        must carry `field` under that name."""
        ...

    def close(self) -> None: ...


def outcome_row(outcome: CommandOutcome) -> dict[str, Any]:
    """The outcome as JSON-ready values (its table row, and its notification)."""
    return {
        "command_id": str(outcome.command_id), "status": outcome.status,
        "aggregate_id": str(outcome.aggregate_id) if outcome.aggregate_id else None,
        "aggregate_version": outcome.aggregate_version, "position": outcome.position,
        "result": outcome.result, "error": outcome.error or None,
        "aggregates": {str(k): list(v) for k, v in outcome.aggregates.items()},
        "tenant_id": str(outcome.tenant_id) if outcome.tenant_id else None,
    }


# Postgres refuses NOTIFY payloads from 8000 bytes; larger outcomes are read from the table.
NOTICE_LIMIT = 7900


def outcome_notice(row: dict[str, Any]) -> str:
    """`<command id>` plus, when small enough, the outcome itself: the waiting gateway then
    needs no query to learn it."""
    notice = f"{row['command_id']} {orjson.dumps(row).decode()}"
    return notice if len(notice.encode()) < NOTICE_LIMIT else row["command_id"]


def outcome_from_notice(payload: str) -> CommandOutcome | None:
    _, _, body = payload.partition(" ")
    return outcome_from_row(orjson.loads(body)) if body else None


def outcome_from_row(row: Any) -> CommandOutcome:
    def _json(value: Any) -> Any:
        return orjson.loads(value) if isinstance(value, str | bytes) else value

    def _uuid(value: Any) -> UUID | None:
        return UUID(str(value)) if value else None

    return CommandOutcome(
        command_id=UUID(str(row["command_id"])),
        status=row["status"],
        aggregate_id=_uuid(row["aggregate_id"]),
        aggregate_version=row["aggregate_version"],
        position=row["position"],
        result=_json(row["result"]) or {},
        error=_json(row["error"]),
        aggregates={UUID(k): (t, int(v)) for k, (t, v) in
                    (_json(row.get("aggregates")) or {}).items()},
        tenant_id=_uuid(row.get("tenant_id")),
    )
