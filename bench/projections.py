"""Projection rebuild throughput against a raw batched asyncpg insert of the same rows.

    python -m bench.projections [--events 100000]

On a fresh embedded Postgres (migrated), a mixed history is COPYed straight into the event
store: per tenant an account and workspace, apps created, updated and deleted, API keys,
datasets, documents going through their whole indexing (requested, started, parsed,
cleaned, split, segments created, indexed, completed). Then:

1. **rebuild**: `projections.rebuild.rebuild` of the console projection into console_v2,
   as `eddy projections rebuild console` runs it: read, fold, COPY, keys and indexes.
   Rate = events / seconds of that bulk load (the catch-up has nothing to do here).
2. **baseline**: the rows the rebuild wrote (every table of console_v2 and its tracking
   rows), already in memory, inserted with asyncpg `executemany` in batches of 1,000 into
   an empty copy of the same tables with the same indexes (`LIKE ... INCLUDING ALL`).
   Rate = the same events / its seconds.

Prints both, the ratio rebuild / baseline (target >= 0.5) and the rebuild rate (target
>= 20,000 events/s), the rebuild's phases and the CPU time it took in this process (the fold
runs here; on a shared machine wall time says less than CPU time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY, build_engine
from config import load_settings
from events.envelope import Envelope
from events.postgres_store import PostgresEventStore, encode_stored
from migrations.runner import migrate
from projections.rebuild import Progress, rebuild
from projections.tables import PROJECTION_NAME
from schemas.base import EventPayload
from schemas.knowledge import events as ke
from schemas.platform import events as pe

BATCH = 1_000
SEGMENTS_PER_DOCUMENT = 4


def _history(events: int) -> Iterator[tuple[str, UUID, int, UUID, EventPayload]]:
    """(aggregate type, aggregate id, version, tenant, payload) of whole tenants until
    `events` are reached."""
    produced, t = 0, 0
    while produced < events:
        t += 1
        tenant, owner = uuid4(), uuid4()
        items: list[tuple[str, UUID, int, EventPayload]] = [
            ("Account", owner, 1, pe.AccountRegistered(email=f"o{t}@example.com", name="O",
                                                       credentials_id=uuid4())),
            ("Workspace", tenant, 1, pe.WorkspaceCreated(name=f"w{t}", owner_account_id=owner)),
        ]
        for a in range(5):
            app = uuid4()
            items.append(("App", app, 1, pe.AppCreated(name=f"app {a}", mode="chat",
                                                       created_by=owner)))
            if a < 3:
                items.append(("App", app, 2, pe.AppUpdated(
                    name=f"app {a}'", description="d", icon_type="emoji", icon="🤖",
                    icon_background="#FFF", updated_by=owner)))
            if a == 4:
                items.append(("App", app, 2, pe.AppDeleted(deleted_by=owner)))
            if a < 2:
                items.append(("ApiKey", uuid4(), 1, pe.ApiKeyCreated(
                    key_type="app", app_id=app, token_hash=uuid4().hex * 2,
                    token_hint="app-...abcd")))
        for d in range(2):
            dataset = uuid4()
            items.append(("Dataset", dataset, 1, ke.DatasetCreated(
                name=f"ds {d}", indexing_technique="economy", retrieval_model={},
                created_by=owner)))
            for n in range(3):
                document = uuid4()
                segments = [uuid4() for _ in range(SEGMENTS_PER_DOCUMENT)]
                steps: list[EventPayload] = [
                    ke.DocumentCreated(
                        dataset_id=dataset, name=f"doc {n}.txt", position=n + 1, batch="b",
                        data_source_type="upload_file",
                        source=ke.SourceFile(id=uuid4(), key=f"k/{document}", name="doc.txt",
                                             size=100, extension="txt"),
                        doc_form="text_model", doc_language="English", process_rule={},
                        process_rule_id=uuid4(),
                        indexing_technique="economy", created_from="api", created_by=owner),
                    ke.DocumentIndexingRequested(attempt=1, lane="bulk", reason="created"),
                    ke.DocumentProcessingStarted(attempt=1),
                    ke.DocumentParsed(attempt=1, text_key="t", characters=400),
                    ke.DocumentCleaned(attempt=1, text_key="c", characters=380),
                    ke.DocumentSplit(attempt=1, chunks_key="s", total_segments=len(segments),
                                     word_count=80 * len(segments), tokens=20 * len(segments)),
                ]
                items += [("Document", document, v, p) for v, p in enumerate(steps, 1)]
                items += [("Segment", s, 1, ke.SegmentCreated(
                    dataset_id=dataset, document_id=document, attempt=1, position=i + 1,
                    content=f"segment {i} of document {n}, " * 4, word_count=80, tokens=20,
                    index_node_hash=s.hex)) for i, s in enumerate(segments)]
                items += [
                    ("Document", document, 7, ke.DocumentSegmentsIndexed(
                        attempt=1, segment_ids=segments, completed_segments=len(segments))),
                    ("Document", document, 8, ke.DocumentIndexingCompleted(
                        attempt=1, completed_segments=len(segments))),
                ]
        for kind, aggregate, version, payload in items:
            yield kind, aggregate, version, tenant, payload
        produced += len(items)


async def _fill(conn: asyncpg.Connection, events: int) -> int:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = []
    for n, (kind, aggregate, version, tenant, payload) in enumerate(_history(events)):
        cause = uuid4()
        envelope: Envelope[EventPayload] = Envelope.new(
            payload, aggregate_type=kind, aggregate_id=aggregate, aggregate_version=version,
            tenant_id=tenant, correlation_id=cause, causation_id=cause)
        envelope = Envelope(**{**envelope.__dict__,
                               "occurred_at": start + timedelta(milliseconds=n)})
        stored = encode_stored(envelope)
        records.append((stored.originator_id, stored.originator_version, stored.topic,
                        stored.state))
    await conn.copy_records_to_table(
        "stored_events", columns=["originator_id", "originator_version", "topic", "state"],
        records=records)
    return len(records)


async def _baseline(conn: asyncpg.Connection, schema: str) -> tuple[float, int]:
    """Seconds to insert the version's rows (and its tracking) with batched executemany."""
    tables = [r[0] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)]
    await conn.execute("CREATE SCHEMA bench_baseline")
    data: list[tuple[str, list[str], list[asyncpg.Record]]] = []
    for table in tables:
        await conn.execute(f'CREATE TABLE bench_baseline."{table}"'
                           f' (LIKE "{schema}"."{table}" INCLUDING ALL)')
        rows = await conn.fetch(f'SELECT * FROM "{schema}"."{table}"')
        columns = list(rows[0].keys()) if rows else []
        data.append((table, columns, rows))
    await conn.execute("CREATE TABLE bench_baseline.projection_tracking"
                       " (LIKE public.projection_tracking INCLUDING ALL)")
    tracking = await conn.fetch("SELECT * FROM projection_tracking WHERE projection = $1",
                                schema)
    data.append(("projection_tracking", list(tracking[0].keys()), tracking))
    started = time.perf_counter()
    total = 0
    async with conn.transaction():
        for table, columns, rows in data:
            if not rows:
                continue
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            statement = f'INSERT INTO bench_baseline."{table}" ({names}) VALUES ({marks})'
            for i in range(0, len(rows), BATCH):
                await conn.executemany(statement, [tuple(r) for r in rows[i:i + BATCH]])
            total += len(rows)
    return time.perf_counter() - started, total


async def main(events: int) -> int:
    root = Path(tempfile.mkdtemp(prefix="eddy-bench-projections-"))
    os.chmod(root, 0o755)  # the embedded Postgres runs as its own system user
    pg = EmbeddedPostgres(root / "pg").start()
    try:
        pg.create_database("bench_rebuild")
        settings = load_settings(DB_HOST=pg.host, DB_PORT=pg.port, DB_USERNAME=pg.user,
                                 DB_PASSWORD="", DB_DATABASE="bench_rebuild",
                                 REDIS_HOST="127.0.0.1", SECRET_KEY="x" * 40)
        dsn = settings.database_dsn()
        await asyncio.to_thread(migrate, settings)
        conn = await asyncpg.connect(dsn)
        try:
            started = time.perf_counter()
            stored = await _fill(conn, events)
            print(f"history: {stored:,} events generated and COPYed in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            await conn.execute("ANALYZE stored_events")
            phases: dict[str, float] = {}

            def report(p: Progress) -> None:
                phases[p.phase] = p.seconds

            engine = build_engine(settings)
            store = PostgresEventStore(ASSEMBLY.event_types, host=pg.host, port=pg.port,
                                       user=pg.user, password="", dbname="bench_rebuild")
            cpu = time.process_time()
            try:
                result = await rebuild(engine, dsn, store, ASSEMBLY.event_types,
                                       ASSEMBLY.projections[PROJECTION_NAME], report)
            finally:
                store.close()
                await engine.dispose()
            cpu = time.process_time() - cpu
            rebuild_rate = result.events_loaded / result.load_seconds
            rows = sum(result.rows.values())
            print(f"rebuild: {result.events_loaded:,} events -> {rows:,} rows in "
                  f"{result.load_seconds:.2f} s = {rebuild_rate:,.0f} events/s "
                  f"(read+fold {phases.get('load', 0):.2f} s, copy+index "
                  f"{result.load_seconds - phases.get('load', 0):.2f} s); CPU of this process "
                  f"{cpu:.1f} s = {cpu / result.events_loaded * 1e6:,.0f} us/event; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
                  flush=True)
            baseline_seconds, inserted = await _baseline(conn, result.version.schema)
            baseline_rate = result.events_loaded / baseline_seconds
            print(f"baseline: {inserted:,} rows (read model + tracking) by batched asyncpg "
                  f"executemany in {baseline_seconds:.2f} s = {baseline_rate:,.0f} events/s "
                  "equivalent", flush=True)
        finally:
            await conn.close()
        ratio = rebuild_rate / baseline_rate
        checks: list[tuple[str, Any, str, bool]] = [
            ("rebuild / baseline", f"{ratio:.2f}", ">= 0.50", ratio >= 0.5),
            ("rebuild events/s", f"{rebuild_rate:,.0f}", ">= 20,000", rebuild_rate >= 20_000),
        ]
        print(f"\n{'row':<22} {'result':>12}  {'target':<10} met")
        for name, value, target, met in checks:
            print(f"{name:<22} {value:>12}  {target:<10} {'yes' if met else 'NO'}")
        print("all targets met" if all(c[3] for c in checks) else "some targets NOT met")
        return 0
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.projections", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.events)))


if __name__ == "__main__":
    cli()
