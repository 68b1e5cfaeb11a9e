"""Read-side queries of knowledge tags and dataset metadata.

Dataset and document rows get their tags / metadata as extra columns (correlated
subqueries, see `dataset_extra_columns` / `document_extra_columns`), so every query that
feeds the dataset and document views shows them without a second round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import String, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.knowledge.tables import (
    dataset_metadata_fields,
    datasets,
    documents,
    tag_bindings,
    tags,
)
from projections.platform.tables import accounts
from schemas.knowledge.naming import TAG_TYPE

_EMPTY = literal_column("'[]'::jsonb", JSONB)
_F = dataset_metadata_fields


def _field_id() -> Any:
    return cast(_F.c.id, String)


def dataset_extra_columns() -> list[Any]:
    """`tags` [{id, name, type}] and `doc_metadata_fields` [{id, name, type}] of a dataset."""
    tag_list = (
        select(func.coalesce(func.jsonb_agg(aggregate_order_by(
            func.jsonb_build_object("id", cast(tags.c.id, String), "name", tags.c.name,
                                    "type", tags.c.type),
            tags.c.created_at, tags.c.name), type_=JSONB), _EMPTY))
        .select_from(tag_bindings.join(tags, tags.c.id == tag_bindings.c.tag_id))
        .where(tag_bindings.c.target_id == datasets.c.id, tags.c.type == TAG_TYPE)
        .correlate(datasets).scalar_subquery().label("tags"))
    fields = (
        select(func.coalesce(func.jsonb_agg(aggregate_order_by(
            func.jsonb_build_object("id", _field_id(), "name", _F.c.name, "type", _F.c.type),
            _F.c.created_at, _F.c.name), type_=JSONB), _EMPTY))
        .where(_F.c.dataset_id == datasets.c.id)
        .correlate(datasets).scalar_subquery().label("doc_metadata_fields"))
    return [tag_list, fields]


def document_extra_columns() -> list[Any]:
    """A document's metadata values [{id, name, type, value}] (fields it has a value for),
    whether its dataset shows built-in fields, and its uploader's name."""
    value = documents.c.doc_metadata.op("->", return_type=JSONB)(_field_id())
    details = (
        select(func.coalesce(func.jsonb_agg(aggregate_order_by(
            func.jsonb_build_object("id", _field_id(), "name", _F.c.name, "type", _F.c.type,
                                    "value", value),
            _F.c.created_at, _F.c.name), type_=JSONB), _EMPTY))
        .where(_F.c.dataset_id == documents.c.dataset_id,
               documents.c.doc_metadata.has_key(_field_id()))
        .correlate(documents).scalar_subquery().label("doc_metadata_details"))
    built_in = (select(datasets.c.built_in_field_enabled)
                .where(datasets.c.id == documents.c.dataset_id)
                .correlate(documents).scalar_subquery().label("built_in_field_enabled"))
    uploader = (select(accounts.c.name).where(accounts.c.id == documents.c.created_by)
                .correlate(documents).scalar_subquery().label("uploader_name"))
    return [details, built_in, uploader]


# --- tags ------------------------------------------------------------------------------------


def _binding_count() -> Any:
    # Bindings to live datasets only (see projections.knowledge_meta).
    return (select(func.count()).select_from(
        tag_bindings.join(datasets, datasets.c.id == tag_bindings.c.target_id))
        .where(tag_bindings.c.tag_id == tags.c.id)
        .correlate(tags).scalar_subquery().label("binding_count"))


async def list_tags(engine: AsyncEngine, tenant_id: UUID,
                    keyword: str | None = None) -> list[dict[str, Any]]:
    query = select(tags, _binding_count()).where(tags.c.tenant_id == tenant_id,
                                                 tags.c.type == TAG_TYPE)
    if keyword:
        query = query.where(tags.c.name.ilike(f"%{keyword}%"))
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(tags.c.created_at.desc(), tags.c.id))
                ).mappings().all()
    return [dict(r) for r in rows]


async def tag(engine: AsyncEngine, tenant_id: UUID, tag_id: UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(tags, _binding_count()).where(
            tags.c.id == tag_id, tags.c.tenant_id == tenant_id, tags.c.type == TAG_TYPE))
        ).mappings().first()
    return dict(row) if row else None


async def existing_tag_ids(engine: AsyncEngine, tenant_id: UUID,
                           tag_ids: Sequence[UUID]) -> list[UUID]:
    """The given ids that are this workspace's knowledge tags, in the given order."""
    if not tag_ids:
        return []
    async with engine.connect() as conn:
        found = set((await conn.execute(select(tags.c.id).where(
            tags.c.id.in_(tag_ids), tags.c.tenant_id == tenant_id, tags.c.type == TAG_TYPE))
        ).scalars().all())
    return [t for t in dict.fromkeys(tag_ids) if t in found]


async def dataset_tags(engine: AsyncEngine, dataset_id: UUID) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(tags.c.id, tags.c.name, tags.c.type)
            .join(tag_bindings, tag_bindings.c.tag_id == tags.c.id)
            .where(tag_bindings.c.target_id == dataset_id, tags.c.type == TAG_TYPE)
            .order_by(tags.c.created_at, tags.c.name))).mappings().all()
    return [dict(r) for r in rows]


def datasets_tagged(tag_ids: Sequence[UUID]) -> Any:
    """Filter for GET /v1/datasets?tag_ids=…: datasets bound to any of the tags (Dify's)."""
    return datasets.c.id.in_(select(tag_bindings.c.target_id)
                             .where(tag_bindings.c.tag_id.in_(tag_ids)))


# --- metadata --------------------------------------------------------------------------------


async def metadata_fields(engine: AsyncEngine, dataset_id: UUID) -> list[dict[str, Any]]:
    """A dataset's custom fields, each with the number of documents that have a value."""
    count = (select(func.count()).select_from(documents).where(
        documents.c.dataset_id == _F.c.dataset_id,
        documents.c.doc_metadata.has_key(_field_id()))
        .correlate(_F).scalar_subquery().label("count"))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(_F, count).where(_F.c.dataset_id == dataset_id)
                                   .order_by(_F.c.created_at, _F.c.name))).mappings().all()
    return [dict(r) for r in rows]


async def metadata_field(engine: AsyncEngine, dataset_id: UUID,
                         metadata_id: UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(_F).where(
            _F.c.id == metadata_id, _F.c.dataset_id == dataset_id))).mappings().first()
    return dict(row) if row else None


async def document_ids_in(engine: AsyncEngine, dataset_id: UUID,
                          document_ids: Sequence[UUID]) -> set[UUID]:
    if not document_ids:
        return set()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(documents.c.id).where(
            documents.c.dataset_id == dataset_id, documents.c.id.in_(document_ids)))
        ).scalars().all()
    return set(rows)


async def documents_for_filter(engine: AsyncEngine, dataset_id: UUID,
                               document_ids: Sequence[str]) -> list[dict[str, Any]]:
    """What metadata filtering looks at: values, and the built-in fields' sources."""
    if not document_ids:
        return []
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(documents.c.id, documents.c.name, documents.c.doc_metadata,
                   documents.c.created_at, documents.c.updated_at,
                   documents.c.data_source_type, accounts.c.name.label("uploader_name"))
            .join(accounts, accounts.c.id == documents.c.created_by, isouter=True)
            .where(documents.c.dataset_id == dataset_id,
                   documents.c.id.in_([UUID(d) for d in document_ids])))).mappings().all()
    return [dict(r) for r in rows]
