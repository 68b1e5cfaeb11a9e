"""Projectors of the knowledge context into the console read model: datasets, documents
and their indexing status, segments. (Tags and metadata: `meta_projectors.py`.)

Datasets, documents and segments are different aggregates, applied in any relative order
(see `projections.platform.projectors`): deletions leave tombstones that children check,
a late segment of a superseded split stays out, the indexing of a segment not applied yet
waits for it (`segments_indexed_early`), and a document's counts are its split's plus its
hand edits (`segment_edits`), whichever of the two is applied first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Update, bindparam, case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.knowledge.tables import (
    AVAILABLE_DOCUMENT,
    dataset_metadata_fields,
    dataset_queries,
    datasets,
    documents,
    segment_edits,
    segment_hits,
    segments,
    segments_indexed_early,
    tag_bindings,
)
from projections.layout import has, in_bulk_load
from projections.platform.projectors import buried, bury, lock
from projections.registry import projectors
from schemas.base import EventPayload
from schemas.knowledge import events as ev

# Statements take their values as bound parameters rather than literals: SQLAlchemy then
# compiles each shape once and does not coerce and cache-key every value again (several
# times faster, which a rebuild's bulk load of every event feels).
_UPDATE_DOCUMENT = (update(documents).where(documents.c.id == bindparam("document_id"))
                    .returning(documents.c.dataset_id))
_DOCUMENT_ID = bindparam("document_id")
_COMPLETE_DOCUMENT = _UPDATE_DOCUMENT.values(completed_segments=documents.c.total_segments)
_SEGMENT_IDS = bindparam("segment_ids", expanding=True)
# (Built once, not per event: a statement object keeps its cache key.)
_EARLIER_SPLITS = [delete(t).where(t.c.document_id == _DOCUMENT_ID,
                                   t.c.attempt < bindparam("attempt"))
                   for t in (segments, segment_edits)]
_EDITS_OF_SPLIT = select(
    func.coalesce(func.sum(segment_edits.c.segments), 0),
    func.coalesce(func.sum(segment_edits.c.word_count), 0),
    func.coalesce(func.sum(segment_edits.c.tokens), 0)).where(
    segment_edits.c.document_id == _DOCUMENT_ID,
    segment_edits.c.attempt == bindparam("attempt"))
_COMPLETE_SEGMENTS = update(segments).where(segments.c.id.in_(_SEGMENT_IDS), ~segments.c.edited)
_APPLIED_SEGMENTS = select(segments.c.id).where(segments.c.id.in_(_SEGMENT_IDS))
_TAKE_INDEXED_EARLY = (
    delete(segments_indexed_early).where(segments_indexed_early.c.segment_id.in_(_SEGMENT_IDS))
    .returning(segments_indexed_early.c.segment_id, segments_indexed_early.c.completed_at))
_SPLIT_ATTEMPTS = select(documents.c.id, documents.c.split_attempt).where(
    documents.c.id.in_(bindparam("document_ids", expanding=True)))
_INSERT_DOCUMENT = insert(documents)
_INSERT_SEGMENTS = insert(segments)
# A document's status changes that set plain values (no SQL computed from the row).
_Progress = (ev.DocumentIndexingRequested | ev.DocumentProcessingStarted | ev.DocumentParsed
             | ev.DocumentCleaned)


async def _document(conn: AsyncConnection, e: Envelope[EventPayload], *,
                    statement: Update = _UPDATE_DOCUMENT, **values: Any) -> None:
    """Updates the event's document with these values (and `statement`'s own, computed
    from the row)."""
    changed = await conn.execute(statement, {
        "document_id": e.aggregate_id, "updated_at": e.occurred_at, **values})
    await _recount(conn, changed.scalar())


async def project_documents_progressed(conn: AsyncConnection,
                                run: Sequence[Envelope[_Progress]]) -> None:
    """Consecutive plain status changes (a document's pipeline stages come one after the
    other): one UPDATE per document with each column's last value, which is what the
    changes one by one would leave, since none of them reads the row."""
    changes: dict[UUID, dict[str, Any]] = {}
    last: dict[UUID, Envelope[_Progress]] = {}
    for e in run:
        changes.setdefault(e.aggregate_id, {}).update(_progress(e))
        last[e.aggregate_id] = e
    for document_id, values in changes.items():
        await _document(conn, last[document_id], **values)


def _progress(e: Envelope[_Progress]) -> dict[str, Any]:
    """The columns a plain status change sets."""
    p = e.payload
    if isinstance(p, ev.DocumentIndexingRequested):
        return {"attempt": p.attempt, "indexing_status": "waiting", "is_paused": False,
                "error": None, "processing_started_at": None, "parsing_completed_at": None,
                "cleaning_completed_at": None, "splitting_completed_at": None,
                "completed_at": None, "paused_at": None, "stopped_at": None,
                "completed_segments": 0}
    if isinstance(p, ev.DocumentProcessingStarted):
        return {"indexing_status": "parsing", "processing_started_at": e.occurred_at}
    if isinstance(p, ev.DocumentParsed):
        return {"indexing_status": "cleaning", "parsing_completed_at": e.occurred_at}
    return {"indexing_status": "splitting", "cleaning_completed_at": e.occurred_at}


async def _recount(conn: AsyncConnection, dataset_id: UUID | None) -> None:
    """A dataset's document counts (layout 2), after one of its documents changed: counted
    again rather than adjusted, so they are right whatever order documents' events of
    different partitions are applied in. On Postgres the row is locked first, so the count,
    a statement of its own (READ COMMITTED), sees what a concurrent recount committed. A
    bulk load counts once at its end (`recount_datasets`)."""
    if dataset_id is None or in_bulk_load(conn) or not has(conn, datasets.c.document_count):
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(select(datasets.c.id).where(datasets.c.id == dataset_id)
                           .with_for_update())
    await conn.execute(update(datasets).where(datasets.c.id == dataset_id)
                       .values(**_document_counts()))


async def recount_datasets(conn: AsyncConnection) -> None:
    """Every dataset's document counts at once (layout 2): the end of a bulk load."""
    if has(conn, datasets.c.document_count):
        await conn.execute(update(datasets).values(**_document_counts()))


def _document_counts() -> dict[str, Any]:
    """The counts of the dataset row being updated, over its documents."""
    d = documents.c
    of_dataset = select(func.count()).where(d.dataset_id == datasets.c.id)
    return {"document_count": of_dataset.scalar_subquery(),
            "word_count": select(func.coalesce(func.sum(d.word_count), 0))
            .where(d.dataset_id == datasets.c.id).scalar_subquery(),
            "available_document_count": of_dataset.where(AVAILABLE_DOCUMENT).scalar_subquery()}


def _dataset_settings(p: ev.DatasetCreated | ev.DatasetUpdated) -> dict[str, Any]:
    return p.model_dump(include={"name", "description", "permission", "indexing_technique",
                                 "embedding_model", "embedding_model_provider",
                                 "retrieval_model"})


async def project_dataset_created(conn: AsyncConnection, e: Envelope[ev.DatasetCreated]) -> None:
    p = e.payload
    await conn.execute(insert(datasets), {
        "id": e.aggregate_id, "tenant_id": e.tenant_id, **_dataset_settings(p),
        "created_by": p.created_by, "created_at": e.occurred_at,
        "updated_by": p.created_by, "updated_at": e.occurred_at})


async def project_dataset_updated(conn: AsyncConnection, e: Envelope[ev.DatasetUpdated]) -> None:
    p = e.payload
    await conn.execute(update(datasets).where(datasets.c.id == e.aggregate_id).values(
        **_dataset_settings(p), updated_by=p.updated_by, updated_at=e.occurred_at))


async def project_dataset_deleted(conn: AsyncConnection, e: Envelope[ev.DatasetDeleted]) -> None:
    # Its documents, segments and bindings may still arrive (other partitions): the
    # tombstone keeps them out. (Its metadata fields are its own events: none can follow.)
    await lock(conn, e.aggregate_id, exclusive=True)
    await bury(conn, e.aggregate_id, e.aggregate_type, e.occurred_at)
    for table in (segment_edits, segment_hits, segments, documents, dataset_metadata_fields,
                  dataset_queries):
        await conn.execute(delete(table).where(table.c.dataset_id == e.aggregate_id))
    # Its tags stay; their bindings to it go.
    await conn.execute(delete(tag_bindings).where(tag_bindings.c.target_id == e.aggregate_id))
    await conn.execute(delete(datasets).where(datasets.c.id == e.aggregate_id))


def _source(source: ev.SourceFile, by: UUID, e: Envelope[EventPayload]) -> dict[str, Any]:
    """The file as the read model keeps it: who uploaded it and when, with it."""
    return {**source.model_dump(mode="json"), "created_by": str(by),
            "created_at": int(e.occurred_at.timestamp())}


async def project_document_created(conn: AsyncConnection, e: Envelope[ev.DocumentCreated]) -> None:
    p = e.payload
    await lock(conn, p.dataset_id)
    if await buried(conn, [p.dataset_id]):
        return  # applied after its dataset's deletion: gone with it (its later events too)
    await conn.execute(_INSERT_DOCUMENT, {
        "id": e.aggregate_id, "tenant_id": e.tenant_id, "dataset_id": p.dataset_id,
        "position": p.position, "name": p.name, "batch": p.batch,
        "data_source_type": p.data_source_type, "source": _source(p.source, p.created_by, e),
        "doc_form": p.doc_form, "doc_language": p.doc_language,
        "process_rule": p.process_rule, "process_rule_id": p.process_rule_id,
        "indexing_technique": p.indexing_technique, "created_from": p.created_from,
        "created_by": p.created_by, "created_at": e.occurred_at, "updated_at": e.occurred_at,
        "attempt": 0, "indexing_status": "waiting"})
    await _recount(conn, p.dataset_id)


async def project_document_source_replaced(conn: AsyncConnection,
                                           e: Envelope[ev.DocumentSourceReplaced]) -> None:
    p = e.payload
    await _document(conn, e, name=p.name, source=_source(p.source, p.updated_by, e),
                    process_rule=p.process_rule, process_rule_id=p.process_rule_id)


async def project_indexing_requested(conn: AsyncConnection,
                                     e: Envelope[ev.DocumentIndexingRequested]) -> None:
    await project_documents_progressed(conn, [e])


async def project_processing_started(conn: AsyncConnection,
                                     e: Envelope[ev.DocumentProcessingStarted]) -> None:
    await project_documents_progressed(conn, [e])


async def project_parsed(conn: AsyncConnection, e: Envelope[ev.DocumentParsed]) -> None:
    await project_documents_progressed(conn, [e])


async def project_cleaned(conn: AsyncConnection, e: Envelope[ev.DocumentCleaned]) -> None:
    await project_documents_progressed(conn, [e])


async def project_split(conn: AsyncConnection, e: Envelope[ev.DocumentSplit]) -> None:
    p = e.payload
    # Exclusive: a segment of an older attempt or a hand edit, applied concurrently, is
    # either already here (removed / added up below) or waits and sees the new split.
    await lock(conn, e.aggregate_id, exclusive=True)
    # The new attempt's segments replace all earlier ones. Its own segments (recorded in the
    # same transaction) arrive from their own partitions, before or after this: the payload
    # counts them either way.
    split = {"document_id": e.aggregate_id, "attempt": p.attempt}
    for statement in _EARLIER_SPLITS:
        await conn.execute(statement, split)
    edited = (await conn.execute(_EDITS_OF_SPLIT, split)).one()  # applied before the split
    await _document(conn, e, indexing_status="indexing", splitting_completed_at=e.occurred_at,
                    split_attempt=p.attempt, total_segments=p.total_segments + edited[0],
                    word_count=p.word_count + edited[1], tokens=p.tokens + edited[2],
                    completed_segments=0)


async def project_segments_indexed(conn: AsyncConnection,
                                   e: Envelope[ev.DocumentSegmentsIndexed]) -> None:
    p = e.payload
    await _document(conn, e, completed_segments=p.completed_segments)
    ids = set(p.segment_ids)
    missing = ids - await _complete_split_segments(conn, ids, e)
    if not missing:
        return
    # Some of them are not applied yet (their partitions run late): once they are, they
    # must come out completed. Exclusive, so that a creation applied concurrently has
    # either committed (and is completed now) or finds the mark.
    dataset_id = await conn.scalar(select(documents.c.dataset_id).where(
        documents.c.id == e.aggregate_id))
    if dataset_id is None:
        return  # deleted with its dataset, and its segments with it
    await lock(conn, dataset_id)
    await lock(conn, e.aggregate_id, exclusive=True)
    if await buried(conn, [dataset_id]):
        return
    missing -= await _complete_split_segments(conn, missing, e)
    missing -= await buried(conn, missing)  # deleted by hand already: nothing to mark
    if missing:
        await conn.execute(insert(segments_indexed_early), [
            {"segment_id": s, "completed_at": e.occurred_at} for s in sorted(missing)])


async def _complete_split_segments(conn: AsyncConnection, ids: set[UUID],
                                   e: Envelope[ev.DocumentSegmentsIndexed]) -> set[UUID]:
    """Marks those of the segments that are applied completed (unless edited by hand since:
    their own SegmentIndexed says); returns the ids applied.

    Read before the update, not after: each statement sees what had committed when it
    began, so a segment committed in between is updated but not reported, and goes the
    locked way; read after, it would be reported applied though the update missed it."""
    found = await conn.execute(_APPLIED_SEGMENTS, {"segment_ids": list(ids)})
    await conn.execute(_COMPLETE_SEGMENTS, {
        "segment_ids": list(ids), "status": "completed", "completed_at": e.occurred_at})
    return set(found.scalars())


async def project_indexing_completed(conn: AsyncConnection,
                                     e: Envelope[ev.DocumentIndexingCompleted]) -> None:
    # Every live segment, hand edits applied before this included: the payload's number
    # is the split's (the same when no edit came first).
    await _document(conn, e, statement=_COMPLETE_DOCUMENT, indexing_status="completed",
                    completed_at=e.occurred_at)


async def project_indexing_failed(conn: AsyncConnection,
                                  e: Envelope[ev.DocumentIndexingFailed]) -> None:
    await _document(conn, e, indexing_status="error", error=e.payload.error,
                    stopped_at=e.occurred_at)


async def project_indexing_paused(conn: AsyncConnection,
                                  e: Envelope[ev.DocumentIndexingPaused]) -> None:
    await _document(conn, e, is_paused=True, paused_at=e.occurred_at)


async def project_indexing_resumed(conn: AsyncConnection,
                                   e: Envelope[ev.DocumentIndexingResumed]) -> None:
    await _document(conn, e, is_paused=False, paused_at=None)


async def project_document_updated(conn: AsyncConnection, e: Envelope[ev.DocumentUpdated]) -> None:
    p = e.payload
    current = (await conn.execute(select(documents.c.enabled, documents.c.archived).where(
        documents.c.id == e.aggregate_id))).first()
    if current is None:
        return  # deleted with its dataset (applied first, from another partition)
    values: dict[str, Any] = {"name": p.name, "enabled": p.enabled,
                              "archived": p.archived}
    if current.enabled and not p.enabled:
        values |= {"disabled_at": e.occurred_at,
                   "disabled_by": p.updated_by}
    elif p.enabled:
        values |= {"disabled_at": None, "disabled_by": None}
    if p.archived != current.archived:
        values["archived_at"] = e.occurred_at if p.archived else None
    await _document(conn, e, **values)


async def project_document_deleted(conn: AsyncConnection, e: Envelope[ev.DocumentDeleted]) -> None:
    # Its segments may still arrive (other partitions): the tombstone keeps them out.
    await lock(conn, e.aggregate_id, exclusive=True)
    await bury(conn, e.aggregate_id, e.aggregate_type, e.occurred_at)
    for table in (segment_edits, segment_hits, segments):
        await conn.execute(delete(table).where(table.c.document_id == e.aggregate_id))
    deleted = await conn.execute(delete(documents).where(documents.c.id == e.aggregate_id)
                                 .returning(documents.c.dataset_id))
    await _recount(conn, deleted.scalar())


async def project_segment_created(conn: AsyncConnection, e: Envelope[ev.SegmentCreated]) -> None:
    await project_segments_created(conn, [e])


async def project_segments_created(conn: AsyncConnection,
                                   run: Sequence[Envelope[ev.SegmentCreated]]) -> None:
    """Consecutive segment creations (a split's segments arrive together), each kind of
    statement once for all of them. None of them changes what another one checks: each
    segment is its own aggregate, and creations bury nothing and split nothing."""
    # Shared: segments of one document are created concurrently; its deletion, its split
    # and its indexing's marks (exclusive) are not. Parents before children.
    dataset_ids = sorted({e.payload.dataset_id for e in run})
    document_ids = sorted({e.payload.document_id for e in run})
    for parent in (*dataset_ids, *document_ids):
        await lock(conn, parent)
    indexed_at = dict((await conn.execute(
        _TAKE_INDEXED_EARLY, {"segment_ids": [e.aggregate_id for e in run]})).all())
    gone = await buried(conn, [*dataset_ids, *document_ids])
    split_attempts = dict((await conn.execute(
        _SPLIT_ATTEMPTS, {"document_ids": document_ids})).all())
    # Left out: those applied after their document's or dataset's deletion (gone with it),
    # and those of an attempt a later split, applied first, replaced.
    created = [e for e in run if not {e.payload.dataset_id, e.payload.document_id} & gone
               and (split_attempts.get(e.payload.document_id) or 0) <= e.payload.attempt]
    if not created:
        return
    await conn.execute(_INSERT_SEGMENTS, [_segment_row(e, indexed_at.get(e.aggregate_id))
                                          for e in created])
    for e in created:
        p = e.payload
        if p.created_by:  # added by hand: the document's counts grow (split ones: the split)
            await _count_edit(conn, e.aggregate_id, p.dataset_id, p.document_id, p.attempt,
                              1, p.word_count, p.tokens)


def _segment_row(e: Envelope[ev.SegmentCreated], indexed_at: datetime | None) -> dict[str, Any]:
    p = e.payload
    return {
        "id": e.aggregate_id, "tenant_id": e.tenant_id, "dataset_id": p.dataset_id,
        "document_id": p.document_id, "attempt": p.attempt, "position": p.position,
        "content": p.content, "answer": p.answer, "keywords": p.keywords,
        "word_count": p.word_count, "tokens": p.tokens, "index_node_hash": p.index_node_hash,
        "child_chunks": _children(p), "indexing_at": e.occurred_at,
        "status": "indexing" if indexed_at is None else "completed",
        "completed_at": indexed_at, "created_by": p.created_by,
        "created_at": e.occurred_at, "updated_at": e.occurred_at}


async def _locked_segment(conn: AsyncConnection, segment_id: UUID) -> Any:
    """The segment's row, read again once its dataset and document are locked (as its
    creation locks them); None when it was removed (its document or dataset deleted, a
    later split) or never added (applied after such a removal)."""
    row = (await conn.execute(select(segments.c.dataset_id, segments.c.document_id).where(
        segments.c.id == segment_id))).first()
    if row is None:
        return None
    await lock(conn, row.dataset_id)
    await lock(conn, row.document_id)
    return (await conn.execute(select(segments).where(segments.c.id == segment_id))).first()


async def project_segment_updated(conn: AsyncConnection, e: Envelope[ev.SegmentUpdated]) -> None:
    p = e.payload
    current = await _locked_segment(conn, e.aggregate_id)
    if current is None:
        return
    disabled_at = None if p.enabled else e.occurred_at
    await conn.execute(update(segments).where(segments.c.id == e.aggregate_id).values(
        content=p.content, answer=p.answer, keywords=p.keywords,
        word_count=p.word_count, tokens=p.tokens, index_node_hash=p.index_node_hash,
        enabled=p.enabled, child_chunks=_children(p), updated_at=e.occurred_at,
        updated_by=p.updated_by,
        disabled_at=disabled_at if current.enabled != p.enabled else segments.c.disabled_at,
        status="indexing", indexing_at=e.occurred_at, completed_at=None, edited=True))
    await _count_edit(conn, e.aggregate_id, current.dataset_id, current.document_id,
                      current.attempt, 0, p.word_count - current.word_count,
                      p.tokens - current.tokens)


async def project_segment_indexed(conn: AsyncConnection, e: Envelope[ev.SegmentIndexed]) -> None:
    await conn.execute(update(segments).where(
        segments.c.id == e.aggregate_id,
        segments.c.index_node_hash == e.payload.index_node_hash,
    ).values(status="completed", completed_at=e.occurred_at))


async def project_segment_deleted(conn: AsyncConnection, e: Envelope[ev.SegmentDeleted]) -> None:
    p = e.payload
    await lock(conn, p.dataset_id)
    await lock(conn, p.document_id)
    # Its document's indexing, applied later, must not mark it as still to come.
    await bury(conn, e.aggregate_id, e.aggregate_type, e.occurred_at)
    current = (await conn.execute(select(segments).where(segments.c.id == e.aggregate_id))
               ).first()
    if current is None:
        return
    await conn.execute(delete(segments).where(segments.c.id == e.aggregate_id))
    await _count_edit(conn, e.aggregate_id, p.dataset_id, p.document_id, current.attempt,
                      -1, -current.word_count, -current.tokens)


async def project_segments_hit(conn: AsyncConnection, e: Envelope[ev.SegmentsHit]) -> None:
    """Adds a batch's hits. Replay-safe as every projector is: the runner applies each
    event once per projection (its tracking commits with this change), and a rebuild starts
    from no counts."""
    p = e.payload
    document_ids = sorted({h.document_id for h in p.hits})
    await lock(conn, p.dataset_id)
    for document_id in document_ids:
        await lock(conn, document_id)
    gone = await buried(conn, [p.dataset_id, *document_ids])
    if p.dataset_id in gone:
        return
    insert_query = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(
        dataset_queries)
    latest = dataset_queries.c.last_queried_at
    await conn.execute(insert_query.values(
        dataset_id=p.dataset_id, last_queried_at=e.occurred_at).on_conflict_do_update(
        index_elements=[dataset_queries.c.dataset_id], set_={"last_queried_at": case(
            (insert_query.excluded.last_queried_at > latest,
             insert_query.excluded.last_queried_at), else_=latest)}))
    rows = [{"segment_id": h.segment_id, "dataset_id": p.dataset_id,
             "document_id": h.document_id, "hit_count": h.count}
            for h in sorted(p.hits, key=lambda h: h.segment_id)  # one lock order: no deadlock
            if h.document_id not in gone]
    if not rows:
        return
    upsert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(segment_hits)
    await conn.execute(upsert.on_conflict_do_update(
        index_elements=[segment_hits.c.segment_id],
        set_={"hit_count": segment_hits.c.hit_count + upsert.excluded.hit_count}), rows)


def _children(p: ev.SegmentCreated | ev.SegmentUpdated) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in p.child_chunks]


async def _count_edit(conn: AsyncConnection, segment_id: UUID, dataset_id: UUID,
                      document_id: UUID, attempt: int, count: int, words: int,
                      tokens: int) -> None:
    """A hand edit's change to its document's counts (Dify recomputes them too): recorded
    per segment, and shown now when the document's split is this attempt's; otherwise
    DocumentSplit adds the edits up when it is applied."""
    t = segment_edits
    changed = await conn.execute(update(t).where(t.c.segment_id == segment_id).values(
        segments=t.c.segments + count, word_count=t.c.word_count + words,
        tokens=t.c.tokens + tokens))
    if not changed.rowcount:
        await conn.execute(insert(t).values(
            segment_id=segment_id, dataset_id=dataset_id, document_id=document_id,
            attempt=attempt, segments=count, word_count=words, tokens=tokens))
    d = documents.c
    shown = await conn.execute(update(documents).where(d.id == document_id,
                                                       d.split_attempt == attempt)
                               .values(total_segments=d.total_segments + count,
                                       word_count=d.word_count + words,
                                       tokens=d.tokens + tokens,
                                       # all of them while completed; the job's progress
                                       # otherwise
                                       completed_segments=case(
                                           (d.indexing_status == "completed",
                                            d.completed_segments + count),
                                           else_=d.completed_segments)))
    if shown.rowcount:
        await _recount(conn, dataset_id)


PROJECTORS = projectors(
    project_dataset_created, project_dataset_updated, project_dataset_deleted,
    project_document_created, project_document_source_replaced, project_indexing_requested,
    project_processing_started, project_parsed, project_cleaned, project_split,
    project_segments_indexed, project_indexing_completed, project_indexing_failed,
    project_indexing_paused, project_indexing_resumed, project_document_updated,
    project_document_deleted, project_segment_created, project_segment_updated,
    project_segment_indexed, project_segment_deleted, project_segments_hit,
    # name claims are write-side uniqueness; the read model shows the dataset's name
    ignore=[ev.DatasetNameClaimed, ev.DatasetNameReleased],
    after_bulk_load=[recount_datasets],
    runs=[project_segments_created, project_documents_progressed],
)
