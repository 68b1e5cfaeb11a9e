"""An event store in process memory, for the fast unit tier: the same contract as the
Postgres store (optimistic concurrency per aggregate version, gap-free global positions,
the command outcome stored atomically with its events)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from uuid import UUID

from events.envelope import Envelope
from events.store import CommandAlreadyRecorded, CommandOutcome, ConcurrencyConflict
from schemas.base import EventPayload


class InMemoryEventStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # callers use the store from worker threads
        self._log: list[Envelope[EventPayload]] = []
        self._versions: dict[UUID, int] = {}
        self._outcomes: dict[UUID, CommandOutcome] = {}

    def close(self) -> None:
        pass

    def load(self, aggregate_id: UUID) -> list[Envelope[EventPayload]]:
        with self._lock:
            return [replace(e, position=None) for e in self._log
                    if e.aggregate_id == aggregate_id]

    def append(self, events: Sequence[Envelope[EventPayload]],
               outcome: CommandOutcome | None = None) -> int:
        assert events
        with self._lock:
            if outcome is not None and outcome.command_id in self._outcomes:
                raise CommandAlreadyRecorded()
            versions = dict(self._versions)
            for event in events:
                if event.aggregate_version != versions.get(event.aggregate_id, 0) + 1:
                    raise ConcurrencyConflict(
                        f"{event.aggregate_type} {event.aggregate_id} v{event.aggregate_version}")
                versions[event.aggregate_id] = event.aggregate_version
            first = len(self._log) + 1
            self._log += [e.at(first + i) for i, e in enumerate(events)]
            self._versions = versions
            if outcome is not None:
                self._outcomes[outcome.command_id] = replace(outcome, position=len(self._log))
            return len(self._log)

    def record_without_events(self, outcome: CommandOutcome) -> None:
        with self._lock:
            self._outcomes.setdefault(outcome.command_id, outcome)

    def outcome(self, command_id: UUID) -> CommandOutcome | None:
        with self._lock:
            return self._outcomes.get(command_id)

    def read_from(self, after_position: int, limit: int) -> list[Envelope[EventPayload]]:
        with self._lock:
            return self._log[after_position:after_position + limit]

    def max_position(self) -> int:
        with self._lock:
            return len(self._log)
