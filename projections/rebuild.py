"""Rebuild a projection into a new version beside the live one (`eddy projections rebuild`).

1. The next version (`console_v2`, `statistics_v2`) is registered as `building`, with the
   newest layout the projection's tables declare (`Projection.metadata`,
   `projections/layout.py`). Its schema gets the active version's tables
   (`CREATE TABLE ... (LIKE ...)`: no keys or indexes yet) plus the tables and columns the
   newer layout adds.
2. Bulk load: the event store up to its current position is read in position order, in
   chunks, and folded by the projection's own projectors into an in-memory SQLite database
   (the same code that projects live events, on a synchronous connection: no round trip
   per statement; each statement shape compiled once by SQLAlchemy and run on the sqlite3
   cursor, `projections/sqlite_fold.py`; a run of one event type goes to its projector's
   run form when it has one, `projections/registry.py`). Its tables and the version's
   tracking rows are then COPYed into the new schema, and only then are keys, foreign keys
   and secondary indexes created.
3. Catch-up: the version becomes `catching_up`, so the projection processor applies every
   batch it receives to it as well; the events appended since the bulk load's position are
   read from the event store and applied through the `ProjectionRunner` (tracking makes the
   two appliers' overlap harmless). Then it is `live`: `eddy projections switch` may use it.

Progress (events done, rate, ETA) is reported per chunk. A rebuild that Postgres going away
interrupts (a transient failure) drops what it built and starts again once the database
answers: no version is left `building` for an operator to find and drop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from sqlalchemy import create_engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from adapters.transient import is_transient
from events.envelope import Envelope
from events.postgres_store import decode_stored
from events.registry import EventTypes
from events.store import EventStore
from projections.layout import (
    BULK_LOAD_OPTION,
    LAYOUT_OPTION,
    newest_layout,
    read_tables,
    version_engine,
)
from projections.parking import park
from projections.registry import Projection
from projections.runner import ProjectionRunner, UnhandledEvent
from projections.sqlite_fold import SQLiteFoldConnection, run_at_once
from projections.tables import READ
from projections.versions import (
    CATCHING_UP,
    LIVE,
    ProjectionVersion,
    VersionRefused,
    begin_build,
    drop,
    list_versions,
    set_state,
)
from schemas.base import EventPayload

log = logging.getLogger(__name__)

CHUNK = 5_000  # events read and folded per step of the bulk load
CATCH_UP_BATCH = 500
REDO_MAX_BACKOFF = 5.0  # seconds between attempts while the database is away
LOST_CONNECTION_GRACE = 0.5  # seconds for a failed bulk load's connection to show it is lost


class ConnectionLost(ConnectionError):
    """The database went away under the bulk load (a transient failure: built again)."""


@dataclass(frozen=True)
class Progress:
    phase: str  # "load", "copy", "index", "catch-up"
    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


Report = Callable[[Progress], None]


@dataclass(frozen=True)
class RebuildResult:
    version: ProjectionVersion
    events_loaded: int  # by the bulk load
    events_caught_up: int
    load_seconds: float  # reading, folding, copying and indexing
    rows: dict[str, int]  # per table of the new version


async def rebuild(database: AsyncEngine, dsn: str, store: EventStore, types: EventTypes,
                  projection: Projection, report: Report | None = None) -> RebuildResult:
    """Builds the next version of `projection`, caught up and `live` (not switched to);
    built again from the start when an outage interrupts it."""
    interruptions = 0
    while True:
        version: ProjectionVersion | None = None
        try:
            version = await begin_build(database, projection.name,
                                        newest_layout(projection.metadata))
            return await _build(database, dsn, store, types, projection, version, report)
        except Exception as exc:
            if not is_transient(exc):
                raise
            interruptions += 1
            log.warning("rebuild interrupted, building again", extra={
                "projection": projection.name, "attempt": interruptions,
                "version": version.schema if version else None, "error": repr(exc)[:300]})
            await asyncio.sleep(min(REDO_MAX_BACKOFF, 0.5 * interruptions))
            if version is not None:
                await _drop_half_built(database, version)


async def _drop_half_built(database: AsyncEngine, version: ProjectionVersion) -> None:
    """Drops the interrupted version, waiting for the database as long as it takes."""
    waited = 0
    while True:
        try:
            await drop(database, version.projection, version.version)
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            waited += 1
            await asyncio.sleep(min(REDO_MAX_BACKOFF, 0.5 * waited))


async def _build(database: AsyncEngine, dsn: str, store: EventStore, types: EventTypes,
                 projection: Projection, version: ProjectionVersion,
                 report: Report | None) -> RebuildResult:
    layout = version.layout
    active = next(v for v in await list_versions(database, projection.name) if v.active)
    log.info("rebuild started", extra={"projection": projection.name,
                                       "version": version.schema, "layout": layout})
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET TIME ZONE 'UTC'")  # SQLite keeps UTC times without a zone
        started = time.perf_counter()
        async with conn.transaction():
            await _create_tables(conn, projection, active.schema, version)
        loaded, rows = await _bulk_load(conn, types, projection, active.schema, version,
                                        report, started)
        await _index(conn, projection, active.schema, version.schema, report, started)
        load_seconds = time.perf_counter() - started
    except Exception as exc:
        # A server shutting down may first show as an asyncpg protocol error (a COPY
        # refused "while another operation is in progress"); the socket closes right after.
        if not is_transient(exc):
            await asyncio.sleep(LOST_CONNECTION_GRACE)
        if conn.is_closed():
            raise ConnectionLost(f"the bulk load's connection was lost: {exc!r}") from exc
        raise
    finally:
        await conn.close()
    await set_state(database, version, CATCHING_UP, built_position=loaded.position)
    caught_up = await catch_up(database, store, projection, version, loaded.position, report)
    await set_state(database, version, LIVE)
    log.info("rebuild done", extra={"version": version.schema, "events": loaded.events,
                                    "caught_up": caught_up, "seconds": round(load_seconds, 2)})
    return RebuildResult(await _reread(database, version), loaded.events, caught_up,
                         load_seconds, rows)


async def _reread(database: AsyncEngine, version: ProjectionVersion) -> ProjectionVersion:
    return next(v for v in await list_versions(database, version.projection)
                if v.version == version.version)


# --- 1. tables --------------------------------------------------------------------------------


async def _columns(conn: asyncpg.Connection, schema: str) -> dict[str, list[str]]:
    rows = await conn.fetch(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name, c.ordinal_position", schema)
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], []).append(row["column_name"])
    return found


async def _create_tables(conn: asyncpg.Connection, projection: Projection, source: str,
                         version: ProjectionVersion) -> None:
    """The source version's tables without keys or indexes (loaded first, indexed after),
    then what the newer layout declares on top."""
    target = version.schema
    existing = await _columns(conn, source)
    await conn.execute(f'CREATE SCHEMA "{target}"')
    for table in existing:
        await conn.execute(f'CREATE TABLE "{target}"."{table}" (LIKE "{source}"."{table}"'
                           " INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    dialect = postgresql.dialect()
    for table in read_tables(projection.metadata):
        if table.name not in existing:
            ddl = CreateTable(table, include_foreign_key_constraints=[])
            await conn.execute(str(ddl.compile(
                dialect=dialect, schema_translate_map={READ: target})))  # type: ignore[call-arg]
            continue
        for column in table.columns:
            if column.name not in existing[table.name]:
                await conn.execute(f'ALTER TABLE "{target}"."{table.name}" ADD COLUMN '
                                   f"{CreateColumn(column).compile(dialect=dialect)}")


# --- 2. bulk load -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    position: int  # every event at or below it is in the version
    events: int


class _Fold:
    """The projection's projectors applied in store order to a SQLite database in memory,
    with the tracking the runner would have written."""

    def __init__(self, projection: Projection, layout: int, lookups: Sequence[_Lookup]) -> None:
        self.projection = projection
        self.engine = create_engine("sqlite://", poolclass=StaticPool).execution_options(
            **{LAYOUT_OPTION: layout, BULK_LOAD_OPTION: True})
        self.sqlite = self.engine.connect()
        # The tables' logical schema is a database of its own here, so statements name it as
        # declared: a schema_translate_map would rewrite every statement's SQL per execution.
        self.sqlite.exec_driver_sql(f"ATTACH DATABASE ':memory:' AS \"{READ}\"")
        self.sqlite.exec_driver_sql(f'PRAGMA "{READ}".journal_mode = OFF')
        self.sqlite.exec_driver_sql(f'PRAGMA "{READ}".synchronous = OFF')
        self.tables = read_tables(projection.metadata)
        projection.metadata.create_all(self.sqlite, tables=self.tables)
        for lookup in lookups:  # the Postgres version's lookups, or folding is quadratic
            if lookup.table in {t.name for t in self.tables}:
                self.sqlite.exec_driver_sql(lookup.sqlite_ddl)
        self.conn = SQLiteFoldConnection(self.sqlite)
        self.tracking: dict[UUID, tuple[int, int]] = {}  # aggregate -> (version, position)

    def apply(self, events: Sequence[Envelope[EventPayload]]) -> None:
        for event in events:
            if not self.projection.follows(type(event.payload)):
                raise UnhandledEvent(f"{self.projection.name} has no projector for {event.type}")
            self.tracking[event.aggregate_id] = (event.aggregate_version, event.position or 0)
        run_at_once(self.projection.apply(self.conn, events))  # type: ignore[arg-type]

    def finish(self) -> None:
        for step in self.projection.after_bulk_load:
            run_at_once(step(self.conn))  # type: ignore[arg-type]

    def rows_as_csv(self, table: str, columns: Sequence[str]) -> tuple[bytes, int]:
        """The table's rows in COPY's CSV: SQLite's stored values are already what Postgres
        reads (hex uuids, ISO times, JSON text, 0/1 booleans). Strings are quoted, so an
        empty string stays one; NULL is an unquoted empty field."""
        cursor = self.sqlite.connection.driver_connection.execute(  # type: ignore[union-attr]
            f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)}"
            f' FROM "{READ}"."{table}"')
        lines: list[str] = []
        while batch := cursor.fetchmany(10_000):
            lines += [",".join(_csv_field(v) for v in row) for row in batch]
        return ("\n".join(lines) + "\n").encode(), len(lines)

    def close(self) -> None:
        self.sqlite.close()
        self.engine.dispose()


def _csv_field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    return str(value)


@dataclass(frozen=True)
class _Lookup:
    """A plain column index of a version: the fold's SQLite gets the same one."""

    table: str
    name: str
    columns: tuple[str, ...]

    @property
    def sqlite_ddl(self) -> str:
        columns = ", ".join(f'"{c}"' for c in self.columns)
        return (f'CREATE INDEX IF NOT EXISTS "{READ}"."fold_{self.name}" ON "{self.table}"'
                f" ({columns})")


async def _source_indexes(conn: asyncpg.Connection, schema: str) -> list[_Lookup]:
    rows = await conn.fetch("""
        SELECT c.relname AS table_name, i.relname AS index_name,
               array_agg(a.attname ORDER BY k.ord) AS columns
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE n.nspname = $1 AND x.indexprs IS NULL AND x.indpred IS NULL
        GROUP BY 1, 2""", schema)
    return [_Lookup(r["table_name"], r["index_name"], tuple(r["columns"])) for r in rows]


async def _bulk_load(conn: asyncpg.Connection, types: EventTypes, projection: Projection,
                     source: str, version: ProjectionVersion, report: Report | None,
                     started: float) -> tuple[_Loaded, dict[str, int]]:
    high = int(await conn.fetchval(
        "SELECT coalesce(max(notification_id), 0) FROM stored_events"))
    aggregate_types = list(projection.aggregate_types)
    total = int(await conn.fetchval(
        "SELECT count(*) FROM stored_events WHERE notification_id <= $1"
        " AND split_part(topic, ':', 1) = ANY($2)", high, aggregate_types))
    fold = _Fold(projection, version.layout, await _source_indexes(conn, source))

    async def chunk_after(after: int) -> list[asyncpg.Record]:
        return await conn.fetch(
            "SELECT originator_id, originator_version, topic, state, notification_id"
            " FROM stored_events WHERE notification_id > $1 AND notification_id <= $2"
            "  AND split_part(topic, ':', 1) = ANY($3)"
            " ORDER BY notification_id LIMIT $4", after, high, aggregate_types, CHUNK)

    done = 0
    reading = asyncio.ensure_future(chunk_after(0)) if high else None
    try:
        while reading is not None:
            rows = await reading
            reading = None
            if not rows:
                break
            position, done = rows[-1][4], done + len(rows)
            if position < high:
                # The next chunk is asked for before this one is folded: Postgres reads it
                # meanwhile, on the other core.
                reading = asyncio.ensure_future(chunk_after(position))
                await asyncio.sleep(0)  # (its query is sent)
            fold.apply([decode_stored(types, r[0], r[1], r[2], r[3], r[4]) for r in rows])
            if report:
                report(Progress("load", done, total, time.perf_counter() - started))
        fold.finish()
        rows_copied = await _copy(conn, fold, version, report, started)
    finally:
        if reading is not None:  # the fold failed: the read is of no use
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        fold.close()
    await _copy_tracking(conn, fold.tracking, version.schema)
    await _set_watermark(conn, version.schema, high)
    return _Loaded(high, done), rows_copied


async def _copy(conn: asyncpg.Connection, fold: _Fold, version: ProjectionVersion,
                report: Report | None, started: float) -> dict[str, int]:
    target = await _columns(conn, version.schema)
    declared = {t.name: t for t in fold.tables}
    copied = {}
    for done, (name, columns) in enumerate(target.items(), 1):
        table = declared.get(name)
        if table is None or any(c not in table.c for c in columns):
            raise VersionRefused(f"{version.schema}.{name}: a table or column that the "
                                 f"{fold.projection.name} projection does not declare cannot "
                                 "be rebuilt")
        data, count = fold.rows_as_csv(name, columns)
        if count:
            await conn.copy_to_table(name, schema_name=version.schema, columns=columns,
                                     source=io.BytesIO(data), format="csv")
        copied[name] = count
        if report:
            report(Progress("copy", done, len(target), time.perf_counter() - started))
    return copied


async def _copy_tracking(conn: asyncpg.Connection, tracking: dict[UUID, tuple[int, int]],
                         name: str) -> None:
    await conn.copy_records_to_table(
        "projection_tracking", columns=["projection", "aggregate_id", "version", "position"],
        records=[(name, aggregate, v, p) for aggregate, (v, p) in tracking.items()])


async def _set_watermark(conn: asyncpg.Connection, name: str, watermark: int) -> None:
    await conn.execute(
        "INSERT INTO projection_checkpoints (projection, watermark, updated_at)"
        " VALUES ($1, $2, now()) ON CONFLICT (projection) DO UPDATE"
        " SET watermark = excluded.watermark, updated_at = excluded.updated_at",
        name, watermark)


# --- keys and indexes after the load ----------------------------------------------------------


async def _index(conn: asyncpg.Connection, projection: Projection, source: str, target: str,
                 report: Report | None, started: float) -> None:
    """The source version's keys, unique and secondary indexes and foreign keys (in that
    order), and those of tables the newer layout adds; then fresh statistics."""
    constraints = await conn.fetch(
        "SELECT conrelid::regclass::text AS relation, c.relname AS table_name, conname,"
        "       contype, pg_get_constraintdef(x.oid) AS definition"
        " FROM pg_constraint x JOIN pg_class c ON c.oid = x.conrelid"
        " WHERE x.connamespace = $1::regnamespace AND contype IN ('p', 'u', 'f')"
        " ORDER BY contype = 'f', conname", source)
    indexes = await conn.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname NOT IN"
        " (SELECT conname FROM pg_constraint WHERE connamespace = $1::regnamespace)"
        " ORDER BY indexname", source)
    statements = [
        f'ALTER TABLE "{target}"."{c["table_name"]}" ADD CONSTRAINT "{c["conname"]}" '
        + c["definition"].replace(f"REFERENCES {source}.", f"REFERENCES {target}.")
        for c in constraints if c["contype"] != "f"]
    statements += [i["indexdef"].replace(f" ON {source}.", f" ON {target}.") for i in indexes]
    statements += [
        f'ALTER TABLE "{target}"."{c["table_name"]}" ADD CONSTRAINT "{c["conname"]}" '
        + c["definition"].replace(f"REFERENCES {source}.", f"REFERENCES {target}.")
        for c in constraints if c["contype"] == "f"]
    existing = await _columns(conn, source)
    dialect = postgresql.dialect()
    for table in read_tables(projection.metadata):
        if table.name in existing:
            continue
        if table.primary_key.columns:
            columns = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
            statements.append(f'ALTER TABLE "{target}"."{table.name}" ADD PRIMARY KEY ({columns})')
        statements += [str(CreateIndex(index).compile(  # type: ignore[call-arg]
            dialect=dialect, schema_translate_map={READ: target})) for index in table.indexes]
    for done, statement in enumerate(statements, 1):
        await conn.execute(statement)
        if report:
            report(Progress("index", done, len(statements), time.perf_counter() - started))
    for table in await _columns(conn, target):
        await conn.execute(f'ANALYZE "{target}"."{table}"')


# --- 3. catch-up ------------------------------------------------------------------------------


async def catch_up(database: AsyncEngine, store: EventStore, projection: Projection,
                   version: ProjectionVersion, position: int,
                   report: Report | None = None) -> int:
    """Applies the events after `position` to the version, from the event store, until it
    has read to the end (the processor applies whatever is appended after that)."""
    engine = version_engine(database, version.schema, version.layout)
    runner = ProjectionRunner(engine, projection, store, version.schema)
    followed = set(projection.aggregate_types)
    start, high = position, await asyncio.to_thread(store.max_position)
    started, applied = time.perf_counter(), 0
    while True:
        events = await asyncio.to_thread(store.read_from, position, CATCH_UP_BATCH)
        if not events:
            return applied
        ours = [e for e in events if e.aggregate_type in followed]
        while ours:
            try:
                await runner.apply_many(ours)
                break
            except Exception as exc:  # e.g. a deadlock with the processor's batch: again
                if is_transient(exc):
                    await asyncio.sleep(0.1)
                    continue
                await _apply_or_park(runner, ours)
                break
        applied += len(ours)
        position = events[-1].position or position
        if report:
            report(Progress("catch-up", min(position, high) - start, max(high - start, 0),
                            time.perf_counter() - started))



async def _apply_or_park(runner: ProjectionRunner, events: Sequence[Envelope[EventPayload]]
                         ) -> None:
    """One by one, parking each event whose apply fails for good (as the processor does),
    so one poisoned aggregate does not stop the rebuild."""
    for event in events:
        try:
            await runner.apply(event)
        except Exception as exc:
            if is_transient(exc):
                raise
            await park(runner.engine, runner.name, event, exc)
