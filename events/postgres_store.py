"""The event store: eventsourcing's Postgres recorder, holding Eddy's envelopes.

Aggregate events are rows of eventsourcing's `stored_events` table (optimistic concurrency on
(aggregate id, version); a commit-ordered `notification_id` that is the global position:
ascending, with a gap wherever an append failed, so readers page by position). The command
outcome is written in the same transaction as the events, so a command takes effect exactly
once however often it is delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import IntegrityError as RecordConflict
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from prometheus_client import Counter
from psycopg.rows import DictRow

from events.envelope import Envelope
from events.registry import EventTypes
from events.store import (
    OUTCOME_CHANNEL,
    CommandAlreadyRecorded,
    CommandOutcome,
    ConcurrencyConflict,
    outcome_from_row,
    outcome_notice,
    outcome_row,
)
from schemas.base import EventPayload

EVENTS_TABLE = "stored_events"
EVENTS_CHANNEL = EVENTS_TABLE  # eventsourcing NOTIFYs the table's name on every insert


class _OutcomeRecorder(PostgresApplicationRecorder):
    """Writes the command outcome inside the events' transaction (as eventsourcing's
    process recorder does with tracking records)."""

    def _fetch_ids_after_insert_events(
        self, curs: psycopg.Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        # (outcome, how many of the events are its own), in the events' order
        outcomes: Sequence[tuple[CommandOutcome, int]] = kwargs.get("outcomes", ())
        if outcomes and ids:
            # Ids come from one sequence under the table lock: ascending in insert order.
            ordered, start = sorted(ids), 0
            for outcome, count in outcomes:
                own = ordered[start:start + count]
                start += count
                _insert_outcome(curs, outcome, position=max(own) if own else None)
        return ids


def _insert_outcome(
    curs: psycopg.Cursor[Any], outcome: CommandOutcome, position: int | None
) -> None:
    row = outcome_row(replace(outcome, position=position))
    curs.execute(
        "INSERT INTO command_outcomes (command_id, status, aggregate_id, aggregate_version,"
        " position, result, error, aggregates, tenant_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (outcome.command_id, outcome.status, outcome.aggregate_id, outcome.aggregate_version,
         position, *(orjson.dumps(row[k]).decode() if row[k] is not None else None
                     for k in ("result", "error", "aggregates")), outcome.tenant_id),
    )
    curs.execute("SELECT pg_notify(%s, %s)", (OUTCOME_CHANNEL, outcome_notice(row)))


def encode_stored(envelope: Envelope[EventPayload]) -> StoredEvent:
    state = {
        "event_id": str(envelope.event_id),
        "schema_version": envelope.schema_version,
        "tenant_id": str(envelope.tenant_id) if envelope.tenant_id else None,
        "occurred_at": envelope.occurred_at.isoformat(),
        "correlation_id": str(envelope.correlation_id),
        "causation_id": str(envelope.causation_id),
        "payload": envelope.payload_json(),
    }
    return StoredEvent(
        originator_id=envelope.aggregate_id,
        originator_version=envelope.aggregate_version,
        topic=f"{envelope.aggregate_type}:{envelope.type}",
        state=orjson.dumps(state),
    )


def decode_stored(
    types: EventTypes, aggregate_id: UUID, version: int, topic: str, state: bytes,
    position: int | None,
) -> Envelope[EventPayload]:
    """Rebuild an envelope from a stored row, upcasting its payload to the current schema."""
    aggregate_type, event_type = topic.split(":", 1)
    raw = orjson.loads(state)
    payload = types.decode(event_type, raw["schema_version"], raw["payload"])
    return Envelope(
        event_id=UUID(raw["event_id"]),
        type=event_type,
        schema_version=payload.schema_version,
        tenant_id=UUID(raw["tenant_id"]) if raw["tenant_id"] else None,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        aggregate_version=version,
        occurred_at=datetime.fromisoformat(raw["occurred_at"]),
        correlation_id=UUID(raw["correlation_id"]),
        causation_id=UUID(raw["causation_id"]),
        payload=payload,
        position=position,
    )


def message_value(aggregate_type: str, event_type: str, aggregate_id: str, version: int,
                  position: int, state: bytes) -> bytes:
    """A stored row as the message the relay publishes, without decoding it: the envelope's
    JSON form (`Envelope.to_json`) with the payload as stored. Consumers decode it with
    `EventTypes.envelope_from_json`, which upcasts a payload of an older schema version."""
    head = orjson.dumps({"type": event_type, "aggregate_type": aggregate_type,
                         "aggregate_id": aggregate_id, "aggregate_version": version,
                         "position": position, "replay_id": None})
    # `state` is a JSON object (encode_stored) without these keys: the two objects' members
    # joined make one.
    return b"%b,%b" % (head[:-1], state[1:])


# The relay's read of the log: rows as stored, ids as text (what message keys are).
SELECT_STORED_AFTER = (
    "SELECT notification_id, originator_id::text AS aggregate_id, originator_version, topic,"
    f" state FROM {EVENTS_TABLE} WHERE notification_id > $1 ORDER BY notification_id LIMIT $2")


# Counted where events are appended (command handlers, processors): a worker's
# WORKER_METRICS_PORT, or /metrics for what the api process appends.
EVENTS_APPENDED = Counter("eddy_events_appended_total", "Events appended to the store",
                          ["type"])


# An append holds the table's EXCLUSIVE lock (gapless positions) for a few statements. A
# process paused inside it (SIGSTOP, a VM frozen) would stall every writer for as long as it
# is paused: Postgres ends such a session after this long idle, releasing the lock; the
# paused process's append then fails and is retried on a new connection (nothing was
# committed). Nothing else runs in these transactions, so no healthy one idles this long.
APPEND_IDLE_TIMEOUT_SECONDS = 5.0


class PostgresEventStore:
    """Synchronous (psycopg) access; async callers use it through a thread."""

    def __init__(self, types: EventTypes, *, host: str, port: int, user: str, password: str,
                 dbname: str, pool_size: int = 4) -> None:
        self.types = types
        self.datastore = PostgresDatastore(
            dbname=dbname, host=host, port=port, user=user, password=password,
            pool_size=pool_size, max_overflow=4, pre_ping=True,
            idle_in_transaction_session_timeout=APPEND_IDLE_TIMEOUT_SECONDS,
        )
        self.recorder = _OutcomeRecorder(self.datastore, events_table_name=EVENTS_TABLE)

    def close(self) -> None:
        self.datastore.close()

    def load(self, aggregate_id: UUID) -> list[Envelope[EventPayload]]:
        return [
            decode_stored(self.types, e.originator_id, e.originator_version, e.topic, e.state, None)
            for e in self.recorder.select_events(aggregate_id)
        ]

    def append(self, events: Sequence[Envelope[EventPayload]],
               outcome: CommandOutcome | None = None) -> int:
        """Store events (and the outcome of the command that caused them) atomically;
        returns the last position."""
        position = self._insert(list(events), [] if outcome is None
                                else [(outcome, len(events))])[-1]
        assert position is not None
        return position

    def append_batch(self, entries: Sequence[tuple[Sequence[Envelope[EventPayload]],
                                                   CommandOutcome]]) -> list[int | None]:
        events = [e for own, _ in entries for e in own]
        if not events:  # all rejected: outcomes only
            with self.datastore.transaction(commit=True) as curs:
                for _, outcome in entries:
                    _insert_outcome(curs, outcome, position=None)
            return [None] * len(entries)
        return self._insert(events, [(outcome, len(own)) for own, outcome in entries])

    def _insert(self, events: list[Envelope[EventPayload]],
                outcomes: list[tuple[CommandOutcome, int]]) -> list[int | None]:
        """Insert events and outcomes in one transaction; each outcome's position, or the
        last event's position alone when there are no outcomes."""
        try:
            ids = self.recorder.insert_events([encode_stored(e) for e in events],
                                              outcomes=outcomes)
        except RecordConflict as exc:
            if any(self.outcome(o.command_id) is not None for o, _ in outcomes):
                raise CommandAlreadyRecorded from exc
            raise ConcurrencyConflict(str(exc)) from exc
        except psycopg.errors.UniqueViolation as exc:
            raise CommandAlreadyRecorded from exc
        assert ids
        for event in events:
            EVENTS_APPENDED.labels(event.type).inc()
        ordered, start, positions = sorted(ids), 0, []
        for _, count in outcomes:
            own = ordered[start:start + count]
            start += count
            positions.append(max(own) if own else None)
        return positions or [ordered[-1]]

    def record_without_events(self, outcome: CommandOutcome) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT 1 FROM command_outcomes WHERE command_id = %s", (outcome.command_id,)
            )
            if curs.fetchone() is None:
                _insert_outcome(curs, outcome, position=None)

    def outcome(self, command_id: UUID) -> CommandOutcome | None:
        with self.datastore.transaction() as curs:
            curs.execute("SELECT * FROM command_outcomes WHERE command_id = %s", (command_id,))
            row = curs.fetchone()
        return outcome_from_row(row) if row else None

    def read_from(self, after_position: int, limit: int) -> list[Envelope[EventPayload]]:
        return [
            decode_stored(self.types, n.originator_id, n.originator_version, n.topic, n.state, n.id)
            for n in self.recorder.select_notifications(
                after_position, limit, inclusive_of_start=False
            )
        ]

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def events_naming(self, event_types: Sequence[str], field: str,
                      value: UUID) -> list[Envelope[EventPayload]]:
        # No index on the payload: one pass over the table, for rare work (an app's
        # deletion), in Postgres rather than decoding every event here.
        with self.datastore.transaction() as curs:
            curs.execute(
                f"SELECT notification_id, originator_id, originator_version, topic, state"
                f" FROM {EVENTS_TABLE} WHERE split_part(topic, ':', 2) = ANY(%s)"
                f" AND convert_from(state, 'UTF8')::jsonb -> 'payload' ->> %s = %s"
                f" ORDER BY notification_id", (list(event_types), field, str(value)))
            rows = curs.fetchall()
        return [decode_stored(self.types, r["originator_id"], r["originator_version"],
                              r["topic"], bytes(r["state"]), r["notification_id"])
                for r in rows]


