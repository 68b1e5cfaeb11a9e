"""Read-model layouts and the rebuild's bulk fold, in process (SQLite).

The bulk fold runs the projection's own projectors in store order on a synchronous SQLite
connection, skipping per-event recounts and counting once at the end: it must give the
same read model, row for row, as the projectors applying every event one at a time with
the same layout (the interleaving test's history covers every event type).
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

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
from schemas.knowledge import events as kev
from tests.unit.test_projection_interleaving import (
    PROJECTION,
    READ_TABLES,
    Event,
    ReadModel,
    applied,
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


def _folded(positioned: list[Event]) -> tuple[ReadModel, dict[UUID, tuple[int, int]]]:
    """The bulk fold's read model and tracking."""
    fold = _Fold(PROJECTION, LAYOUT, [])
    try:
        fold.apply(positioned)
        fold.finish()
        folded: ReadModel = {}
        for table in READ_TABLES:
            key = [c.name for c in table.primary_key.columns]
            rows = [dict(r) for r in fold.sqlite.execute(select(*table.columns)).mappings()]
            folded[table.name] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in key))
        return folded, dict(fold.tracking)
    finally:
        fold.close()


async def _one_by_one(positioned: list[Event]) -> ReadModel:
    """Each event's single projector, in a transaction of its own."""
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    engine = engine.execution_options(schema_translate_map={READ: None},
                                      **{LAYOUT_OPTION: LAYOUT})
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all, tables=READ_TABLES)
        for event in positioned:
            async with engine.begin() as conn:
                await PROJECTION.apply(conn, [event])
        return await read_model(engine)
    finally:
        await engine.dispose()


async def test_bulk_fold_equals_the_projectors_one_event_at_a_time(tmp_path: Path) -> None:
    history = await record(tmp_path)
    positioned = [e.at(n) for n, e in enumerate(history.log, 1)]

    folded, tracked = _folded(positioned)
    one_by_one = await _one_by_one(positioned)

    assert folded["datasets"] and any(r["document_count"] for r in folded["datasets"])
    assert folded == one_by_one, "\n".join(differences(one_by_one, folded))
    last = {e.aggregate_id: (e.aggregate_version, e.position) for e in positioned}
    assert tracked == last


async def test_a_late_run_of_segment_creations_gives_the_store_order_read_model(
        tmp_path: Path) -> None:
    """Every segment creation delivered last (the runner's order: one applied earlier only
    when a later event of its own segment brings it): one long run for the run form, after
    its documents' and dataset's deletions, later splits and indexing marks."""
    history = await record(tmp_path)
    created = [e for e in history.log if isinstance(e.payload, kev.SegmentCreated)]
    order = applied(history, [e for e in history.log if e not in created] + created)
    positioned = [e.at(n) for n, e in enumerate(order, 1)]
    run = [e for e in positioned[-len(created):] if isinstance(e.payload, kev.SegmentCreated)]
    buried = {history.deleted["document"], history.deleted["dataset"]}
    assert len(run) > len(created) // 2
    assert any({e.payload.document_id, e.payload.dataset_id} & buried for e in run)

    folded, _ = _folded(positioned)
    # the read model is the same in any order (test_projection_interleaving): store order's
    store_order = await _one_by_one([e.at(n) for n, e in enumerate(history.log, 1)])

    assert folded["segments"] and folded["segments_indexed_early"] == []
    assert folded == store_order, "\n".join(differences(store_order, folded))
