"""Projectors of knowledge tags and dataset metadata (fields, built-in switch, document
values). Registered with the others in projections.projectors.PROJECTORS.

Tags and datasets are different aggregates, so on a replay a binding may be applied after
its dataset's deletion: queries therefore always join bindings to live datasets, and
document values to their dataset's current fields.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.tables import dataset_metadata_fields, datasets, documents, tag_bindings, tags


def _uuid(value: str | None) -> UUID | None:
    return UUID(value) if value else None


# --- tags ------------------------------------------------------------------------------------


async def project_tag_created(conn: AsyncConnection, e: Envelope) -> None:
    p = e.payload
    await conn.execute(insert(tags).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, type=p["type"], name=p["name"],
        created_by=_uuid(p["created_by"]), created_at=e.occurred_at))


async def project_tag_renamed(conn: AsyncConnection, e: Envelope) -> None:
    await conn.execute(update(tags).where(tags.c.id == e.aggregate_id)
                       .values(name=e.payload["name"]))


async def project_tag_deleted(conn: AsyncConnection, e: Envelope) -> None:
    await conn.execute(delete(tag_bindings).where(tag_bindings.c.tag_id == e.aggregate_id))
    await conn.execute(delete(tags).where(tags.c.id == e.aggregate_id))


async def project_tag_bound(conn: AsyncConnection, e: Envelope) -> None:
    p = e.payload
    await conn.execute(pg_insert(tag_bindings).values(
        tag_id=e.aggregate_id, target_id=UUID(p["target_id"]), tenant_id=e.tenant_id,
        created_by=_uuid(p["created_by"]), created_at=e.occurred_at,
    ).on_conflict_do_nothing())


async def project_tag_unbound(conn: AsyncConnection, e: Envelope) -> None:
    await conn.execute(delete(tag_bindings).where(
        tag_bindings.c.tag_id == e.aggregate_id,
        tag_bindings.c.target_id == UUID(e.payload["target_id"])))


# --- metadata --------------------------------------------------------------------------------


async def project_metadata_field_added(conn: AsyncConnection, e: Envelope) -> None:
    p = e.payload
    await conn.execute(insert(dataset_metadata_fields).values(
        id=UUID(p["metadata_id"]), tenant_id=e.tenant_id, dataset_id=e.aggregate_id,
        name=p["name"], type=p["type"], created_by=_uuid(p["created_by"]),
        created_at=e.occurred_at, updated_by=_uuid(p["created_by"]), updated_at=e.occurred_at))


async def project_metadata_field_renamed(conn: AsyncConnection, e: Envelope) -> None:
    p = e.payload
    await conn.execute(update(dataset_metadata_fields).where(
        dataset_metadata_fields.c.id == UUID(p["metadata_id"])).values(
        name=p["name"], updated_by=_uuid(p["updated_by"]), updated_at=e.occurred_at))


async def project_metadata_field_deleted(conn: AsyncConnection, e: Envelope) -> None:
    field_id = e.payload["metadata_id"]
    await conn.execute(delete(dataset_metadata_fields).where(
        dataset_metadata_fields.c.id == UUID(field_id)))
    # Tidy the documents' values (reads ignore them anyway once the field is gone).
    await conn.execute(update(documents).where(
        documents.c.dataset_id == e.aggregate_id,
        documents.c.doc_metadata.has_key(field_id),
    ).values(doc_metadata=documents.c.doc_metadata.op("-")(field_id)))


async def project_built_in_fields_toggled(conn: AsyncConnection, e: Envelope) -> None:
    await conn.execute(update(datasets).where(datasets.c.id == e.aggregate_id)
                       .values(built_in_field_enabled=e.payload["enabled"]))


async def project_document_metadata_updated(conn: AsyncConnection, e: Envelope) -> None:
    values: dict[str, Any] = e.payload["values"]
    await conn.execute(update(documents).where(documents.c.id == e.aggregate_id)
                       .values(doc_metadata=values, updated_at=e.occurred_at))


KNOWLEDGE_META_PROJECTORS = {
    "TagCreated": project_tag_created,
    "TagRenamed": project_tag_renamed,
    "TagDeleted": project_tag_deleted,
    "TagBound": project_tag_bound,
    "TagUnbound": project_tag_unbound,
    "DatasetMetadataFieldAdded": project_metadata_field_added,
    "DatasetMetadataFieldRenamed": project_metadata_field_renamed,
    "DatasetMetadataFieldDeleted": project_metadata_field_deleted,
    "DatasetBuiltInFieldsToggled": project_built_in_fields_toggled,
    "DocumentMetadataUpdated": project_document_metadata_updated,
}
