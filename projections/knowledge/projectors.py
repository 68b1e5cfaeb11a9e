"""Projectors of the knowledge context into the console read model: datasets, documents
and their indexing status, segments. (Tags and metadata: `meta_projectors.py`.)"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.knowledge.tables import (
    dataset_metadata_fields,
    datasets,
    documents,
    segments,
    tag_bindings,
)
from projections.registry import projectors
from schemas.base import EventPayload
from schemas.knowledge import events as ev


async def _document(conn: AsyncConnection, e: Envelope[EventPayload], **values: Any) -> None:
    await conn.execute(update(documents).where(documents.c.id == e.aggregate_id)
                       .values(updated_at=e.occurred_at, **values))


def _dataset_settings(p: ev.DatasetCreated | ev.DatasetUpdated) -> dict[str, Any]:
    return p.model_dump(include={"name", "description", "permission", "indexing_technique",
                                 "embedding_model", "embedding_model_provider",
                                 "retrieval_model"})


async def project_dataset_created(conn: AsyncConnection, e: Envelope[ev.DatasetCreated]) -> None:
    p = e.payload
    await conn.execute(insert(datasets).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, **_dataset_settings(p),
        created_by=p.created_by, created_at=e.occurred_at,
        updated_by=p.created_by, updated_at=e.occurred_at))


async def project_dataset_updated(conn: AsyncConnection, e: Envelope[ev.DatasetUpdated]) -> None:
    p = e.payload
    await conn.execute(update(datasets).where(datasets.c.id == e.aggregate_id).values(
        **_dataset_settings(p), updated_by=p.updated_by, updated_at=e.occurred_at))


async def project_dataset_deleted(conn: AsyncConnection, e: Envelope[ev.DatasetDeleted]) -> None:
    for table in (segments, documents, dataset_metadata_fields):
        await conn.execute(delete(table).where(table.c.dataset_id == e.aggregate_id))
    # Its tags stay; their bindings to it go.
    await conn.execute(delete(tag_bindings).where(tag_bindings.c.target_id == e.aggregate_id))
    await conn.execute(delete(datasets).where(datasets.c.id == e.aggregate_id))


async def project_document_created(conn: AsyncConnection, e: Envelope[ev.DocumentCreated]) -> None:
    p = e.payload
    await conn.execute(insert(documents).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, dataset_id=p.dataset_id,
        position=p.position, name=p.name, batch=p.batch,
        data_source_type=p.data_source_type, source=p.source.model_dump(mode="json"),
        doc_form=p.doc_form,
        doc_language=p.doc_language, process_rule=p.process_rule,
        indexing_technique=p.indexing_technique, created_from=p.created_from,
        created_by=p.created_by, created_at=e.occurred_at, updated_at=e.occurred_at,
        attempt=0, indexing_status="waiting"))


async def project_document_source_replaced(conn: AsyncConnection,
                                           e: Envelope[ev.DocumentSourceReplaced]) -> None:
    p = e.payload
    await _document(conn, e, name=p.name, source=p.source.model_dump(mode="json"),
                    process_rule=p.process_rule)


async def project_indexing_requested(conn: AsyncConnection,
                                     e: Envelope[ev.DocumentIndexingRequested]) -> None:
    await _document(
        conn, e, attempt=e.payload.attempt, indexing_status="waiting", is_paused=False,
        error=None, processing_started_at=None, parsing_completed_at=None,
        cleaning_completed_at=None, splitting_completed_at=None, completed_at=None,
        paused_at=None, stopped_at=None, completed_segments=0)


async def project_processing_started(conn: AsyncConnection,
                                     e: Envelope[ev.DocumentProcessingStarted]) -> None:
    await _document(conn, e, indexing_status="parsing", processing_started_at=e.occurred_at)


async def project_parsed(conn: AsyncConnection, e: Envelope[ev.DocumentParsed]) -> None:
    await _document(conn, e, indexing_status="cleaning", parsing_completed_at=e.occurred_at)


async def project_cleaned(conn: AsyncConnection, e: Envelope[ev.DocumentCleaned]) -> None:
    await _document(conn, e, indexing_status="splitting", cleaning_completed_at=e.occurred_at)


async def project_split(conn: AsyncConnection, e: Envelope[ev.DocumentSplit]) -> None:
    p = e.payload
    # The new attempt's segments replace all earlier ones (recorded in the same transaction
    # as this event, so they are already applied or follow on this aggregate's partition).
    await conn.execute(delete(segments).where(segments.c.document_id == e.aggregate_id,
                                              segments.c.attempt < p.attempt))
    await _document(conn, e, indexing_status="indexing", splitting_completed_at=e.occurred_at,
                    split_attempt=p.attempt,
                    total_segments=p.total_segments, word_count=p.word_count,
                    tokens=p.tokens, completed_segments=0)


async def project_segments_indexed(conn: AsyncConnection,
                                   e: Envelope[ev.DocumentSegmentsIndexed]) -> None:
    p = e.payload
    await conn.execute(update(segments).where(segments.c.id.in_(p.segment_ids)).values(
        status="completed", completed_at=e.occurred_at))
    await _document(conn, e, completed_segments=p.completed_segments)


async def project_indexing_completed(conn: AsyncConnection,
                                     e: Envelope[ev.DocumentIndexingCompleted]) -> None:
    await _document(conn, e, indexing_status="completed", completed_at=e.occurred_at,
                    completed_segments=e.payload.completed_segments)


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
        documents.c.id == e.aggregate_id))).one()
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
    await conn.execute(delete(segments).where(segments.c.document_id == e.aggregate_id))
    await conn.execute(delete(documents).where(documents.c.id == e.aggregate_id))


async def project_segment_created(conn: AsyncConnection, e: Envelope[ev.SegmentCreated]) -> None:
    p = e.payload
    await conn.execute(insert(segments).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, dataset_id=p.dataset_id,
        document_id=p.document_id, attempt=p.attempt, position=p.position,
        content=p.content, answer=p.answer, keywords=p.keywords,
        word_count=p.word_count, tokens=p.tokens, index_node_hash=p.index_node_hash,
        child_chunks=_children(p), status="indexing", indexing_at=e.occurred_at,
        created_by=p.created_by,
        created_at=e.occurred_at, updated_at=e.occurred_at))
    if p.created_by:  # added by hand: the document's counts grow
        await _recount_document(conn, p.document_id)


async def project_segment_updated(conn: AsyncConnection, e: Envelope[ev.SegmentUpdated]) -> None:
    p = e.payload
    current = (await conn.execute(select(segments.c.enabled, segments.c.document_id).where(
        segments.c.id == e.aggregate_id))).one()
    disabled_at = None if p.enabled else e.occurred_at
    await conn.execute(update(segments).where(segments.c.id == e.aggregate_id).values(
        content=p.content, answer=p.answer, keywords=p.keywords,
        word_count=p.word_count, tokens=p.tokens, index_node_hash=p.index_node_hash,
        enabled=p.enabled, child_chunks=_children(p), updated_at=e.occurred_at,
        disabled_at=disabled_at if current.enabled != p.enabled else segments.c.disabled_at,
        status="indexing", indexing_at=e.occurred_at, completed_at=None))
    await _recount_document(conn, current.document_id)


async def project_segment_indexed(conn: AsyncConnection, e: Envelope[ev.SegmentIndexed]) -> None:
    await conn.execute(update(segments).where(
        segments.c.id == e.aggregate_id,
        segments.c.index_node_hash == e.payload.index_node_hash,
    ).values(status="completed", completed_at=e.occurred_at))


async def project_segment_deleted(conn: AsyncConnection, e: Envelope[ev.SegmentDeleted]) -> None:
    await conn.execute(delete(segments).where(segments.c.id == e.aggregate_id))
    await _recount_document(conn, e.payload.document_id)


def _children(p: ev.SegmentCreated | ev.SegmentUpdated) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in p.child_chunks]


async def _recount_document(conn: AsyncConnection, document_id: UUID) -> None:
    """Word count and segment totals after hand edits (Dify recomputes them too)."""
    live = select(func.count(), func.coalesce(func.sum(segments.c.word_count), 0),
                  func.coalesce(func.sum(segments.c.tokens), 0)).join(
        documents, (documents.c.id == segments.c.document_id)
        & (documents.c.split_attempt == segments.c.attempt)).where(
        segments.c.document_id == document_id)
    count, words, tokens = (await conn.execute(live)).one()
    await conn.execute(update(documents).where(documents.c.id == document_id).values(
        total_segments=count, completed_segments=count, word_count=words, tokens=tokens))


PROJECTORS = projectors(
    project_dataset_created, project_dataset_updated, project_dataset_deleted,
    project_document_created, project_document_source_replaced, project_indexing_requested,
    project_processing_started, project_parsed, project_cleaned, project_split,
    project_segments_indexed, project_indexing_completed, project_indexing_failed,
    project_indexing_paused, project_indexing_resumed, project_document_updated,
    project_document_deleted, project_segment_created, project_segment_updated,
    project_segment_indexed, project_segment_deleted,
    # name claims are write-side uniqueness; the read model shows the dataset's name
    ignore=[ev.DatasetNameClaimed, ev.DatasetNameReleased],
)
