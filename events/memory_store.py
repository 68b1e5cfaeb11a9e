"""An event store in process memory, for the fast unit tier: the same contract as the
Postgres store, which is the reference (tests/contracts/event_store.py):

- optimistic concurrency: an append fails when one of its (aggregate, version) keys is
  taken, as the Postgres primary key does (it does not check that versions are consecutive;
  aggregates always record the next version);
- positions are commit-ordered and consecutive within an append; an append that fails still
  uses up positions, as a Postgres sequence does not roll back, so the log may have gaps:
  readers page by position;
- the command outcome is stored atomically with its events, in its JSON form, and
  announced once stored (`on_outcome`, as the Postgres store NOTIFYs it).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from uuid import UUID

import orjson

from events.envelope import Envelope
from events.store import (
    CommandAlreadyRecorded,
    CommandOutcome,
    ConcurrencyConflict,
    outcome_from_row,
    outcome_row,
)
from schemas.base import EventPayload


def _as_json(outcome: CommandOutcome, position: int | None) -> CommandOutcome:
    """The outcome as the Postgres store gives it back: its row, through JSON (a copy, never
    the caller's dicts)."""
    row = outcome_row(replace(outcome, position=position))
    return outcome_from_row(orjson.loads(orjson.dumps(row)))


class InMemoryEventStore:
    def __init__(self) -> None:
        # called with each outcome once stored, from the appending thread
        self.on_outcome: Callable[[CommandOutcome], None] | None = None
        self._lock = threading.Lock()  # callers use the store from worker threads
        self._log: list[Envelope[EventPayload]] = []
        self._positions: list[int] = []  # the log's positions, ascending (for read_from)
        self._last_issued = 0  # like a Postgres sequence: failed appends use numbers up
        self._taken: set[tuple[UUID, int]] = set()
        self._outcomes: dict[UUID, CommandOutcome] = {}

    def close(self) -> None:
        pass

    def load(self, aggregate_id: UUID) -> list[Envelope[EventPayload]]:
        with self._lock:
            events = [e for e in self._log if e.aggregate_id == aggregate_id]
        return sorted((replace(e, position=None) for e in events),
                      key=lambda e: e.aggregate_version)

    def append(self, events: Sequence[Envelope[EventPayload]],
               outcome: CommandOutcome | None = None) -> int:
        assert events
        position = self._insert([(events, outcome)])[0]
        assert position is not None
        return position

    def append_batch(self, entries: Sequence[tuple[Sequence[Envelope[EventPayload]],
                                                   CommandOutcome]]) -> list[int | None]:
        return self._insert(entries)

    def _insert(self, entries: Sequence[tuple[Sequence[Envelope[EventPayload]],
                                              CommandOutcome | None]]) -> list[int | None]:
        """All entries' events and outcomes, or nothing; each entry's last position."""
        positions = self._insert_locked(entries)
        for _, outcome in entries:
            if outcome is not None:
                self._announce(self._outcomes[outcome.command_id])
        return positions

    def _announce(self, outcome: CommandOutcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _insert_locked(self, entries: Sequence[tuple[Sequence[Envelope[EventPayload]],
                                                     CommandOutcome | None]]
                       ) -> list[int | None]:
        with self._lock:
            events = [e for own, _ in entries for e in own]
            keys = [(e.aggregate_id, e.aggregate_version) for e in events]
            conflict = self._first_refused(keys)
            ids = [o.command_id for _, o in entries if o is not None]
            recorded = len(set(ids)) < len(ids) or any(i in self._outcomes for i in ids)
            if conflict is not None or recorded:
                # Postgres' sequence keeps the numbers the refused rows took: the rows before
                # a refused event, or all of them when only an outcome was refused.
                self._last_issued += conflict + 1 if conflict is not None else len(events)
                if recorded or conflict is None:
                    raise CommandAlreadyRecorded()
                event = events[conflict]
                raise ConcurrencyConflict(
                    f"{event.aggregate_type} {event.aggregate_id} v{event.aggregate_version}")
            positions: list[int | None] = []
            for own, outcome in entries:
                first = self._last_issued + 1
                self._last_issued += len(own)
                self._log += [e.at(first + i) for i, e in enumerate(own)]
                self._positions += range(first, self._last_issued + 1)
                position = self._last_issued if own else None
                if outcome is not None:
                    self._outcomes[outcome.command_id] = _as_json(outcome, position)
                positions.append(position)
            self._taken.update(keys)
            return positions

    def _first_refused(self, keys: Sequence[tuple[UUID, int]]) -> int | None:
        """The first row Postgres would refuse: a key taken before, or earlier in the batch."""
        batch: set[tuple[UUID, int]] = set()
        for i, key in enumerate(keys):
            if key in self._taken or key in batch:
                return i
            batch.add(key)
        return None

    def record_without_events(self, outcome: CommandOutcome) -> None:
        with self._lock:
            new = outcome.command_id not in self._outcomes
            if new:
                self._outcomes[outcome.command_id] = _as_json(outcome, None)
        if new:
            self._announce(self._outcomes[outcome.command_id])

    def outcome(self, command_id: UUID) -> CommandOutcome | None:
        with self._lock:
            return self._outcomes.get(command_id)

    def read_from(self, after_position: int, limit: int) -> list[Envelope[EventPayload]]:
        with self._lock:
            start = bisect.bisect_right(self._positions, after_position)
            return self._log[start:start + limit]

    def events_naming(self, event_types: Sequence[str], field: str,
                      value: UUID) -> list[Envelope[EventPayload]]:
        with self._lock:
            return [e for e in self._log if e.type in event_types
                    and str(getattr(e.payload, field, None)) == str(value)]

    def max_position(self) -> int:
        with self._lock:
            return self._positions[-1] if self._positions else 0
