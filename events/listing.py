"""Reading the event store for operators (`eddy events list|show|tail`).

Every query walks an index: the global position (`stored_events_notification_id_idx`) in
position order, stopping at the limit, or the primary key (aggregate id, version) for one
aggregate's history. Tenant, type and time filters are applied to the rows of that walk
(they live in the JSON state, which has no index), so `--limit 20` reads about as many rows
as it takes to find 20 matches, never the whole table. Looking an event up by its event id is
the one exception: there is no index on it, so that lookup scans (newest first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg

from events.postgres_store import EVENTS_TABLE, decode_stored
from events.registry import EventTypes

_STATE = "convert_from(state, 'UTF8')::jsonb"
_COLUMNS = "notification_id, originator_id, originator_version, topic, state"


class EventQueryError(ValueError):
    """Bad input for an event query (a malformed id, position or time)."""


@dataclass(frozen=True)
class EventFilter:
    tenant: UUID | None = None
    aggregate: UUID | None = None
    type: str | None = None  # "EventType" or "AggregateType:EventType"
    from_position: int | None = None  # inclusive
    to_position: int | None = None  # inclusive
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until
    # the dataset's own events and those of every aggregate an event of which names it
    # (`payload.dataset_id`: its documents, segments, name claims)
    dataset: UUID | None = None
    # the same for an app (`payload.app_id`): its workflow runs, drafts and versions,
    # conversations, configuration
    app: UUID | None = None


@dataclass(frozen=True)
class StoredEventRow:
    """One stored event as recorded (payload at its stored schema version)."""

    position: int
    aggregate_type: str
    aggregate_id: UUID
    aggregate_version: int
    type: str
    state: dict[str, Any] = field(repr=False)
    raw_state: bytes = field(repr=False)

    @property
    def tenant_id(self) -> str | None:
        tenant = self.state.get("tenant_id")
        return str(tenant) if tenant else None

    @property
    def occurred_at(self) -> str:
        return str(self.state.get("occurred_at", ""))

    def summary(self) -> dict[str, Any]:
        """The fields of a listing line."""
        return {
            "position": self.position,
            "occurred_at": self.occurred_at,
            "tenant_id": self.tenant_id,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": str(self.aggregate_id),
            "aggregate_version": self.aggregate_version,
            "type": self.type,
            "event_id": self.state.get("event_id"),
        }

    def envelope(self, types: EventTypes) -> dict[str, Any]:
        """The full envelope; the payload upcast to its current schema when the type is
        known (else as stored, with `"upcast": false`)."""
        out = {**self.summary(), **{k: self.state.get(k) for k in (
            "schema_version", "correlation_id", "causation_id")}}
        if self.type in types:
            env = decode_stored(types, self.aggregate_id, self.aggregate_version,
                                f"{self.aggregate_type}:{self.type}", self.raw_state,
                                self.position)
            out.update(schema_version=env.schema_version, payload=env.payload_json(),
                       stored_schema_version=self.state.get("schema_version"), upcast=True)
        else:
            out.update(payload=self.state.get("payload"), upcast=False)
        return out


def parse_time(value: str) -> datetime:
    """An ISO-8601 time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise EventQueryError(f"not an ISO-8601 time: {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError as exc:
        raise EventQueryError(f"{what} must be a UUID, got {value!r}") from exc


def _row(record: tuple[int, UUID, int, str, bytes]) -> StoredEventRow:
    position, aggregate_id, version, topic, state = record
    aggregate_type, _, event_type = topic.partition(":")
    raw = bytes(state)
    return StoredEventRow(position=position, aggregate_type=aggregate_type,
                          aggregate_id=aggregate_id, aggregate_version=version, type=event_type,
                          state=orjson.loads(raw), raw_state=raw)


def _conditions(f: EventFilter, after: int | None = None,
                upto: int | None = None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.aggregate is not None:
        where.append("originator_id = %s")
        params.append(f.aggregate)
    lower = max(x for x in (f.from_position, None if after is None else after + 1, 0)
                if x is not None)
    if lower > 0:
        where.append("notification_id >= %s")
        params.append(lower)
    uppers = [x for x in (f.to_position, upto) if x is not None]
    if uppers:
        where.append("notification_id <= %s")
        params.append(min(uppers))
    if f.type:
        where.append("topic = %s" if ":" in f.type else "split_part(topic, ':', 2) = %s")
        params.append(f.type)
    if f.tenant is not None:
        where.append(f"{_STATE}->>'tenant_id' = %s")
        params.append(str(f.tenant))
    if f.since is not None:
        where.append(f"({_STATE}->>'occurred_at')::timestamptz >= %s")
        params.append(f.since)
    if f.until is not None:
        where.append(f"({_STATE}->>'occurred_at')::timestamptz < %s")
        params.append(f.until)
    for owner, field_name in ((f.dataset, "dataset_id"), (f.app, "app_id")):
        if owner is not None:
            where.append(f"(originator_id = %s OR originator_id IN (SELECT originator_id"
                         f" FROM {EVENTS_TABLE} WHERE {_STATE}->'payload'->>'{field_name}' = %s))")
            params += [owner, str(owner)]
    return where, params


def _select(where: list[str], order: str, limit: int) -> str:
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return (f"SELECT {_COLUMNS} FROM {EVENTS_TABLE}{clause}"
            f" ORDER BY notification_id {order} LIMIT {int(limit)}")


def list_events(conn: psycopg.Connection[Any], f: EventFilter,
                limit: int = 50) -> list[StoredEventRow]:
    """Matching events in position order. With `from_position` (or an aggregate) the first
    `limit` from there; otherwise the latest `limit` (as `git log`), still oldest first."""
    if limit <= 0:
        raise EventQueryError("--limit must be positive")
    where, params = _conditions(f)
    newest_first = f.from_position is None and f.aggregate is None
    rows = conn.execute(_select(where, "DESC" if newest_first else "ASC", limit),
                        params).fetchall()
    out = [_row(r) for r in rows]
    return out[::-1] if newest_first else out


def find_event(conn: psycopg.Connection[Any], ref: str) -> StoredEventRow | None:
    """One event by global position (a number) or event id (a UUID; scans, newest first)."""
    if ref.isdigit():
        row = conn.execute(f"SELECT {_COLUMNS} FROM {EVENTS_TABLE}"
                           " WHERE notification_id = %s", (int(ref),)).fetchone()
    else:
        event_id = parse_uuid(ref, "an event reference (position or event id)")
        row = conn.execute(f"SELECT {_COLUMNS} FROM {EVENTS_TABLE}"
                           f" WHERE {_STATE}->>'event_id' = %s"
                           " ORDER BY notification_id DESC LIMIT 1", (str(event_id),)).fetchone()
    return _row(row) if row else None


def max_position(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(f"SELECT max(notification_id) FROM {EVENTS_TABLE}").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def count_events(conn: psycopg.Connection[Any], f: EventFilter, upto: int) -> int:
    where, params = _conditions(f, upto=upto)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    row = conn.execute(f"SELECT count(*) FROM {EVENTS_TABLE}{clause}", params).fetchone()
    return int(row[0]) if row else 0


def walk(conn: psycopg.Connection[Any], f: EventFilter, after: int, upto: int,
         batch: int = 500) -> Iterator[list[StoredEventRow]]:
    """Matching events after `after` up to `upto`, in position order, `batch` at a time."""
    while after < upto:
        where, params = _conditions(f, after=after, upto=upto)
        rows = [_row(r) for r in conn.execute(_select(where, "ASC", batch), params).fetchall()]
        if rows:
            yield rows
        after = rows[-1].position if len(rows) == batch else upto


def follow(conn: psycopg.Connection[Any], f: EventFilter, *, poll_seconds: float = 0.5,
           batch: int = 500, sleep: Callable[[float], None] = time.sleep
           ) -> Iterator[StoredEventRow]:
    """New matching events as they are committed, forever (stop by closing the iterator).

    Starts after the current end of the log, or at `from_position`. Each round reads up to a
    snapshot of the highest position, so filtered-out rows are never read twice (ids are
    assigned and committed in order under the recorder's table lock)."""
    after = (f.from_position - 1) if f.from_position is not None else max_position(conn)
    while True:
        upto = max_position(conn)
        if f.to_position is not None:
            upto = min(upto, f.to_position)
        for rows in walk(conn, f, after, upto, batch):
            yield from rows
        after = max(after, upto)
        if f.to_position is not None and after >= f.to_position:
            return
        sleep(poll_seconds)
