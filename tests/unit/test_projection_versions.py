"""Read-model layouts and the rebuild's bulk fold, in process (SQLite).

The bulk fold runs the projection's own projectors in store order on a synchronous SQLite
connection, skipping per-event recounts and counting once at the end: it must give the
same read model, row for row, as the projectors applying every event one at a time with
the same layout (the interleaving test's history covers every event type).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from projections.knowledge.tables import datasets, documents
from projections.layout import (
    FIRST_LAYOUT,
    LAYOUT_OPTION,
    columns_in,
    has,
    newest_layout,
    version_engine,
)
from projections.rebuild import Progress, _Fold
from projections.tables import READ, metadata
from tests.unit.test_projection_interleaving import (
    PROJECTION,
    READ_TABLES,
    differences,
    read_model,
    record,
)

LAYOUT = newest_layout(metadata)


def test_layout_2_adds_the_dataset_counts_and_nothing_else() -> None:
    assert LAYOUT == 2
    added = {(t.name, c.name) for t in READ_TABLES for c in t.columns
             if c not in columns_in(t, FIRST_LAYOUT)}
    assert added == {("datasets", "document_count"), ("datasets", "word_count"),
                     ("datasets", "available_document_count")}
    engine = create_async_engine("sqlite+aiosqlite://")
    assert not has(version_engine(engine, "console_v1", 1), datasets.c.word_count)
    assert has(version_engine(engine, "console_v2", 2), datasets.c.word_count)
    assert has(version_engine(engine, "console_v1", 1), documents.c.word_count)


def test_progress_rate_and_eta() -> None:
    p = Progress("load", done=2_000, total=10_000, seconds=4.0)
    assert (p.rate, p.eta_seconds) == (500.0, 16.0)
    assert Progress("load", 0, 10, 0.0).eta_seconds is None


async def test_bulk_fold_equals_the_projectors_one_event_at_a_time(tmp_path: Path) -> None:
    history = await record(tmp_path)
    positioned = [e.at(n) for n, e in enumerate(history.log, 1)]

    fold = _Fold(PROJECTION, LAYOUT, [])
    try:
        fold.apply(positioned)
        fold.finish()
        folded: dict[str, list[dict[str, Any]]] = {}
        for table in READ_TABLES:
            key = [c.name for c in table.primary_key.columns]
            rows = [dict(r) for r in fold.sqlite.execute(select(*table.columns)).mappings()]
            folded[table.name] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in key))
        tracked = dict(fold.tracking)
    finally:
        fold.close()

    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    engine = engine.execution_options(schema_translate_map={READ: None},
                                      **{LAYOUT_OPTION: LAYOUT})
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all, tables=READ_TABLES)
        for event in positioned:
            projector = PROJECTION.handlers.get(type(event.payload))
            if projector is not None:
                async with engine.begin() as conn:
                    await projector(conn, event)
        one_by_one = await read_model(engine)
    finally:
        await engine.dispose()

    assert folded["datasets"] and any(r["document_count"] for r in folded["datasets"])
    assert folded == one_by_one, "\n".join(differences(one_by_one, folded))
    last = {e.aggregate_id: (e.aggregate_version, e.position) for e in positioned}
    assert tracked == last
