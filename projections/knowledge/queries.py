"""Read-side queries of the knowledge context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.knowledge import meta_queries as kmq
from projections.knowledge.tables import (
    AVAILABLE_DOCUMENT,
    datasets,
    documents,
    segment_hits,
    segments,
)
from projections.layout import columns_in, has, layout_of
from projections.page import Page
from projections.platform.tables import accounts

# Segments are live when they belong to their document's current split.
_LIVE = and_(documents.c.id == segments.c.document_id,
             documents.c.split_attempt == segments.c.attempt)


def _dataset_select(engine: AsyncEngine) -> Any:
    """Datasets with their author, tags, metadata fields and document counts: kept on the
    row from layout 2 on, counted over the documents in a version of layout 1."""
    columns = columns_in(datasets, layout_of(engine))
    # Dify's Dataset.doc_form: its first document's
    doc_form = (select(documents.c.doc_form).where(documents.c.dataset_id == datasets.c.id)
                .order_by(documents.c.position).limit(1)
                .correlate(datasets).scalar_subquery().label("doc_form"))
    query = (select(*columns, accounts.c.name.label("author_name"), doc_form,
                    *kmq.dataset_extra_columns())  # tags, metadata fields
             .join(accounts, accounts.c.id == datasets.c.created_by, isouter=True))
    if has(engine, datasets.c.document_count):
        return query
    stats = (select(documents.c.dataset_id,
                    func.count().label("document_count"),
                    func.coalesce(func.sum(documents.c.word_count), 0).label("word_count"),
                    func.count().filter(AVAILABLE_DOCUMENT).label("available_document_count"))
             .group_by(documents.c.dataset_id).subquery())
    return (query.add_columns(
        *(func.coalesce(stats.c[name], 0).label(name)
          for name in ("document_count", "word_count", "available_document_count")))
            .join(stats, stats.c.dataset_id == datasets.c.id, isouter=True))


async def dataset(engine: AsyncEngine, tenant_id: UUID, dataset_id: UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(_dataset_select(engine).where(
            datasets.c.id == dataset_id, datasets.c.tenant_id == tenant_id))).mappings().first()
    return dict(row) if row else None


async def list_datasets(engine: AsyncEngine, tenant_id: UUID, *, page: int, limit: int,
                        keyword: str | None, tag_ids: Sequence[UUID] | None = None) -> Page:
    where = [datasets.c.tenant_id == tenant_id]
    if keyword:
        where.append(datasets.c.name.ilike(f"%{keyword}%"))
    if tag_ids is not None:
        where.append(kmq.datasets_tagged(tag_ids))
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(datasets).where(*where)))
        rows = (await conn.execute(_dataset_select(engine).where(*where)
                                   .order_by(datasets.c.created_at.desc(), datasets.c.id)
                                   .offset((page - 1) * limit).limit(limit))).mappings().all()
        return Page(items=[dict(r) for r in rows], total=int(total.scalar() or 0))


async def document(engine: AsyncEngine, dataset_id: UUID,
                   document_id: UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(documents, *kmq.document_extra_columns()).where(
            documents.c.id == document_id, documents.c.dataset_id == dataset_id))
        ).mappings().first()
    return dict(row) if row else None


async def document_by_file(engine: AsyncEngine, file_id: UUID) -> dict[str, Any] | None:
    """The document whose current source is that uploaded file (signed download links)."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(documents).where(
            documents.c.source["id"].astext == str(file_id)))).mappings().first()
    return dict(row) if row else None


async def documents_by_id(engine: AsyncEngine, dataset_id: UUID,
                          document_ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(documents).where(
            documents.c.dataset_id == dataset_id, documents.c.id.in_(document_ids)))
        ).mappings().all()
    return {r["id"]: dict(r) for r in rows}


async def latest_process_rule(engine: AsyncEngine, dataset_id: UUID) -> dict[str, Any] | None:
    """The dataset's process rule (Dify's Dataset.latest_process_rule): the one its newest
    document was made with."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(documents.c.process_rule_id, documents.c.process_rule)
            .where(documents.c.dataset_id == dataset_id)
            .order_by(documents.c.position.desc()).limit(1))).mappings().first()
    return dict(row) if row else None


DISPLAY_STATUS_FILTERS = {
    "queuing": documents.c.indexing_status == "waiting",
    "indexing": documents.c.indexing_status.in_(["parsing", "cleaning", "splitting", "indexing"])
    & ~documents.c.is_paused,
    "paused": documents.c.indexing_status.in_(["parsing", "cleaning", "splitting", "indexing"])
    & documents.c.is_paused,
    "error": documents.c.indexing_status == "error",
    "available": AVAILABLE_DOCUMENT,
    "disabled": (documents.c.indexing_status == "completed") & ~documents.c.enabled
    & ~documents.c.archived,
    "archived": (documents.c.indexing_status == "completed") & documents.c.archived,
}


async def list_documents(engine: AsyncEngine, dataset_id: UUID, *, page: int, limit: int,
                         keyword: str | None, status: str | None) -> Page:
    where = [documents.c.dataset_id == dataset_id]
    if keyword:
        where.append(documents.c.name.ilike(f"%{keyword}%"))
    if status:
        where.append(DISPLAY_STATUS_FILTERS[status])
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(documents).where(*where)))
        rows = (await conn.execute(select(documents, *kmq.document_extra_columns())
                                   .where(*where)
                                   .order_by(documents.c.position.desc(), documents.c.id)
                                   .offset((page - 1) * limit).limit(limit))).mappings().all()
        return Page(items=[dict(r) for r in rows], total=int(total.scalar() or 0))


async def documents_in_batch(engine: AsyncEngine, dataset_id: UUID,
                             batch: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(documents).where(
            documents.c.dataset_id == dataset_id, documents.c.batch == batch)
            .order_by(documents.c.position))).mappings().all()
    return [dict(r) for r in rows]


async def next_document_position(engine: AsyncEngine, dataset_id: UUID) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.coalesce(func.max(documents.c.position), 0))
                                       .where(documents.c.dataset_id == dataset_id))).scalar()
                   or 0) + 1


async def document_ids(engine: AsyncEngine, dataset_id: UUID) -> list[UUID]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(documents.c.id).where(
            documents.c.dataset_id == dataset_id))).scalars().all()
    return list(rows)


async def searchable_document_ids(engine: AsyncEngine, dataset_id: UUID) -> list[str]:
    """Documents whose chunks retrieval may return: indexed, enabled, not archived."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(documents.c.id).where(
            documents.c.dataset_id == dataset_id, documents.c.enabled, ~documents.c.archived,
            documents.c.indexing_status == "completed"))).scalars().all()
    return [str(r) for r in rows]


# A segment row with its hit count (none recorded yet: 0).
_SEGMENT_WITH_HITS = (segments, func.coalesce(segment_hits.c.hit_count, 0).label("hit_count"),
                      # a split's segments are their document's creator's
                      documents.c.created_by.label("document_created_by"))
_HITS = segment_hits.c.segment_id == segments.c.id


async def list_segments(engine: AsyncEngine, document_id: UUID, *, page: int, limit: int,
                        keyword: str | None, status: str | None) -> Page:
    where = [segments.c.document_id == document_id]
    if keyword:
        where.append(segments.c.content.ilike(f"%{keyword}%"))
    if status:
        where.append(segments.c.status == status)
    base = (select(*_SEGMENT_WITH_HITS).join(documents, _LIVE).outerjoin(segment_hits, _HITS)
            .where(*where))
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(base.subquery())))
        rows = (await conn.execute(base.order_by(segments.c.position)
                                   .offset((page - 1) * limit).limit(limit))).mappings().all()
        return Page(items=[dict(r) for r in rows], total=int(total.scalar() or 0))


async def segments_by_id(engine: AsyncEngine, segment_ids: Sequence[UUID],
                         only_enabled: bool = False) -> dict[UUID, dict[str, Any]]:
    if not segment_ids:
        return {}
    query = (select(*_SEGMENT_WITH_HITS, documents.c.name.label("document_name"),
                    documents.c.data_source_type.label("document_data_source_type"))
             .join(documents, _LIVE).outerjoin(segment_hits, _HITS)
             .where(segments.c.id.in_(segment_ids)))
    if only_enabled:
        query = query.where(segments.c.enabled)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return {r["id"]: dict(r) for r in rows}


async def next_segment_position(engine: AsyncEngine, document_id: UUID) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(
            select(func.coalesce(func.max(segments.c.position), 0)).select_from(segments)
            .join(documents, _LIVE).where(segments.c.document_id == document_id))).scalar()
            or 0) + 1


async def high_quality_datasets(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every workspace's datasets whose chunks live in the vector store (`eddy vdb-migrate`),
    oldest first: id, tenant_id, name."""
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(datasets.c.id, datasets.c.tenant_id, datasets.c.name)
            .where(datasets.c.indexing_technique == "high_quality")
            .order_by(datasets.c.created_at, datasets.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def indexed_segments(engine: AsyncEngine, dataset_id: UUID) -> list[dict[str, Any]]:
    """The live, enabled, indexed segments of a dataset's searchable documents (what
    retrieval may return): id, document_id, attempt, content, child_chunks."""
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(segments.c.id, segments.c.document_id, segments.c.attempt,
                   segments.c.content, segments.c.child_chunks)
            .join(documents, _LIVE)
            .where(segments.c.dataset_id == dataset_id, segments.c.enabled,
                   segments.c.status == "completed", AVAILABLE_DOCUMENT)
            .order_by(documents.c.position, segments.c.position))).mappings().all()
    return [dict(r) for r in rows]
