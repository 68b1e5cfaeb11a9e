"""The event store: eventsourcing's Postgres table and recorder, holding Eddy's envelopes.

Aggregate events are rows of eventsourcing's `stored_events` table (optimistic concurrency on
(aggregate id, version); a commit-ordered `notification_id` that is the global position:
ascending, with a gap wherever an append failed, so readers page by position). The command
outcome is written in the same transaction as the events, so a command takes effect exactly
once however often it is delivered.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import IntegrityError as RecordConflict
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import (
    ConnectionPool,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from eventsourcing.utils import retry
from prometheus_client import Counter

from events.envelope import Envelope
from events.registry import EventTypes
from events.store import (
    NOTICE_LIMIT,
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


def _insert_outcome(
    curs: psycopg.Cursor[Any], outcome: CommandOutcome, position: int | None
) -> None:
    row = outcome_row(replace(outcome, position=position))
    curs.execute(
        "INSERT INTO command_outcomes (command_id, status, aggregate_id, aggregate_version,"
        " position, result, error, aggregates, tenant_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (outcome.command_id, outcome.status, outcome.aggregate_id, outcome.aggregate_version,
         position, *_json_columns(row), outcome.tenant_id),
    )
    curs.execute("SELECT pg_notify(%s, %s)", (OUTCOME_CHANNEL, outcome_notice(row)))


def _json_columns(row: dict[str, Any]) -> tuple[str | None, ...]:
    return tuple(orjson.dumps(row[k]).decode() if row[k] is not None else None
                 for k in ("result", "error", "aggregates"))


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


# An append is one statement, run on its own (autocommit: no BEGIN and COMMIT, one round
# trip): the append lock, the events in the given order, each command's outcome at its own
# events' last position (none without events), and the notifications (the log's wake-up, each
# outcome as `outcome_notice` words it, from its stored row). The first unique violation (a
# taken version, a recorded outcome) stores nothing.
#
# The append lock orders the writers, so positions become visible in ascending order
# (readers page by position): a transaction-level advisory lock, taken before the first
# position is drawn (every inserted row passes the join with `locked`) and released when the
# statement's transaction ends. Being one statement, an append never holds it while its
# process is paused: the server runs the statement and commits whether or not the client
# reads the answer. A writer holding the table's own EXCLUSIVE lock (an older version
# during an upgrade) still excludes appends: their INSERT waits for it.
APPEND_LOCK = 0x6564647941  # "eddyA"
_STORE_EVENTS = f"""
WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock({APPEND_LOCK})),
new AS (
  SELECT * FROM unnest(%(ids)s::uuid[], %(versions)s::bigint[], %(topics)s::text[],
                       %(states)s::bytea[], %(owners)s::int[])
    WITH ORDINALITY AS n(originator_id, originator_version, topic, state, owner, ord)),
stored AS (
  INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state)
  SELECT originator_id, originator_version, topic, state FROM new CROSS JOIN locked
  ORDER BY ord
  RETURNING originator_id, originator_version, notification_id),
owned AS (
  SELECT new.owner, max(stored.notification_id) AS position
  FROM stored JOIN new USING (originator_id, originator_version) GROUP BY new.owner)
"""
_WAKE_RELAY = f"pg_notify('{EVENTS_CHANNEL}', '') AS woken"
# Events alone (a processor's): no outcome, and nothing of command_outcomes' columns.
APPEND_EVENTS = (_STORE_EVENTS + "SELECT (SELECT max(notification_id) FROM stored) AS last,"
                 f" NULL::int[] AS owners, NULL::bigint[] AS positions, {_WAKE_RELAY}")
# Events and the outcomes of the commands that caused them, each at its own events' last
# position, and the outcomes' notices.
APPEND = _STORE_EVENTS + f""",
outcomes AS (
  INSERT INTO command_outcomes (command_id, status, aggregate_id, aggregate_version,
                                position, result, error, aggregates, tenant_id)
  SELECT o.command_id, o.status, o.aggregate_id, o.aggregate_version, owned.position,
         o.result, o.error, coalesce(o.aggregates, '{{}}'), o.tenant_id
  FROM unnest(%(command_ids)s::uuid[], %(statuses)s::text[], %(aggregate_ids)s::uuid[],
              %(aggregate_versions)s::bigint[], %(results)s::jsonb[], %(errors)s::jsonb[],
              %(aggregates)s::jsonb[], %(tenants)s::uuid[])
    WITH ORDINALITY AS o(command_id, status, aggregate_id, aggregate_version, result, error,
                         aggregates, tenant_id, ord)
  LEFT JOIN owned ON owned.owner = o.ord
  RETURNING command_id, status, aggregate_id, aggregate_version, position, result, error,
            aggregates, tenant_id),
noticed AS (
  SELECT pg_notify(%(outcome_channel)s, CASE WHEN octet_length(notice) < %(notice_limit)s
                                        THEN notice ELSE r.command_id::text END)
  FROM outcomes AS r, LATERAL (SELECT r.command_id::text || ' ' || to_jsonb(r)::text) AS t(notice))
SELECT (SELECT max(notification_id) FROM stored) AS last,
       (SELECT array_agg(owner ORDER BY owner) FROM owned) AS owners,
       (SELECT array_agg(position ORDER BY owner) FROM owned) AS positions,
       (SELECT count(*) FROM noticed) AS notices,
       {_WAKE_RELAY}
"""


# One aggregate's events, in version order.
SELECT_AGGREGATE = (f"SELECT originator_version, topic, state FROM {EVENTS_TABLE}"
                    " WHERE originator_id = %s ORDER BY originator_version")


# The relay's read of the log: rows as stored, ids as text (what message keys are).
SELECT_STORED_AFTER = (
    "SELECT notification_id, originator_id::text AS aggregate_id, originator_version, topic,"
    f" state FROM {EVENTS_TABLE} WHERE notification_id > $1 ORDER BY notification_id LIMIT $2")


# Counted where events are appended (command handlers, processors): a worker's
# WORKER_METRICS_PORT, or /metrics for what the api process appends.
EVENTS_APPENDED = Counter("eddy_events_appended_total", "Events appended to the store",
                          ["type"])


# A transaction of this store's left open by a paused process (SIGSTOP, a VM frozen) keeps
# its locks for as long as it is paused: Postgres ends such a session after this long idle,
# and the paused process's work fails and is retried on a new connection (nothing was
# committed). An append is one statement and never idles holding the append lock; this
# bounds the rest (an outcome recorded without events, a writer of an older version holding
# the table lock). Nothing else runs in these transactions, so no healthy one idles this long.
APPEND_IDLE_TIMEOUT_SECONDS = 5.0


def _check_if_readable(conn: psycopg.Connection[Any]) -> None:
    """A round trip (the pre-ping) only when the connection's socket has something to read:
    an idle healthy connection has nothing to say, while one the server closed (Postgres
    restarted) reads as its end, fails the ping and is replaced by the pool."""
    if not conn.closed:
        socket = select.poll()
        socket.register(conn.fileno(), select.POLLIN)
        if not socket.poll(0):
            return
    ConnectionPool.check_connection(conn)


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
        # The pool's check before lending a connection (pre_ping's), made cheap; psycopg_pool
        # takes it only as a constructor argument, which eventsourcing sets.
        self.datastore.pool._check = _check_if_readable
        self.recorder = PostgresApplicationRecorder(self.datastore,
                                                    events_table_name=EVENTS_TABLE)

    def close(self) -> None:
        self.datastore.close()

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def load(self, aggregate_id: UUID) -> list[Envelope[EventPayload]]:
        # One prepared statement given as text: the recorder's `select_events` composes and
        # renders its SQL on every call, a load per command.
        with self.datastore.get_connection() as conn:
            rows = conn.execute(SELECT_AGGREGATE, (aggregate_id,), prepare=True).fetchall()
        return [decode_stored(self.types, aggregate_id, r["originator_version"], r["topic"],
                              r["state"], None) for r in rows]

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

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _insert(self, events: list[Envelope[EventPayload]],
                outcomes: list[tuple[CommandOutcome, int]]) -> list[int | None]:
        """Insert events and outcomes in one transaction; each outcome's position, or the
        last event's position alone when there are no outcomes. Retried on a lost
        connection (Postgres restarted): nothing was stored, or the retry finds it stored."""
        owners = [i for i, (_, count) in enumerate(outcomes, 1) for _ in range(count)]
        columns = [_json_columns(outcome_row(o)) for o, _ in outcomes]
        params = {
            "ids": [e.aggregate_id for e in events],
            "versions": [e.aggregate_version for e in events],
            "topics": [f"{e.aggregate_type}:{e.type}" for e in events],
            "states": [encode_stored(e).state for e in events],
            "owners": owners or [None] * len(events),
            "command_ids": [o.command_id for o, _ in outcomes],
            "statuses": [o.status for o, _ in outcomes],
            "aggregate_ids": [o.aggregate_id for o, _ in outcomes],
            "aggregate_versions": [o.aggregate_version for o, _ in outcomes],
            "results": [c[0] for c in columns], "errors": [c[1] for c in columns],
            "aggregates": [c[2] for c in columns],
            "tenants": [o.tenant_id for o, _ in outcomes],
            "outcome_channel": OUTCOME_CHANNEL, "notice_limit": NOTICE_LIMIT,
        }
        try:
            with self.datastore.get_connection() as conn:
                row = conn.execute(APPEND if outcomes else APPEND_EVENTS, params,
                                   prepare=True).fetchone()
        except RecordConflict as exc:
            if any(self.outcome(o.command_id) is not None for o, _ in outcomes):
                raise CommandAlreadyRecorded from exc
            raise ConcurrencyConflict(str(exc)) from exc
        assert row is not None and row["last"] is not None
        for event in events:
            EVENTS_APPENDED.labels(event.type).inc()
        positions = dict(zip(row["owners"] or (), row["positions"] or (), strict=True))
        return [positions.get(i) for i in range(1, len(outcomes) + 1)] or [row["last"]]

    def record_without_events(self, outcome: CommandOutcome) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT 1 FROM command_outcomes WHERE command_id = %s", (outcome.command_id,)
            )
            if curs.fetchone() is None:
                _insert_outcome(curs, outcome, position=None)

    def outcome(self, command_id: UUID) -> CommandOutcome | None:
        # One statement on the pool's autocommit connection: no BEGIN and ROLLBACK around it.
        with self.datastore.get_connection() as conn:
            row = conn.execute("SELECT * FROM command_outcomes WHERE command_id = %s",
                               (command_id,), prepare=True).fetchone()
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


