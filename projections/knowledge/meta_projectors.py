"""Projectors of knowledge tags and dataset metadata (fields, built-in switch, document
values), into the console read model.

Tags and datasets are different aggregates, applied in any relative order: a binding
applied after its dataset's deletion, or a document's values after their field's deletion,
are left out (tombstones, see `projections.platform.projectors`). Queries still join
bindings to live datasets, and document values to their dataset's current fields.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.knowledge.tables import (
    dataset_metadata_fields,
    datasets,
    documents,
    tag_bindings,
    tags,
)
from projections.platform.projectors import buried, bury, lock
from projections.registry import projectors
from schemas.knowledge import events as ev

METADATA_FIELD = "DatasetMetadataField"  # tombstone kind of a deleted field

# --- tags ------------------------------------------------------------------------------------


async def project_tag_created(conn: AsyncConnection, e: Envelope[ev.TagCreated]) -> None:
    p = e.payload
    await conn.execute(insert(tags).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, type=p.type, name=p.name,
        created_by=p.created_by, created_at=e.occurred_at))


async def project_tag_renamed(conn: AsyncConnection, e: Envelope[ev.TagRenamed]) -> None:
    await conn.execute(update(tags).where(tags.c.id == e.aggregate_id)
                       .values(name=e.payload.name))


async def project_tag_deleted(conn: AsyncConnection, e: Envelope[ev.TagDeleted]) -> None:
    await conn.execute(delete(tag_bindings).where(tag_bindings.c.tag_id == e.aggregate_id))
    await conn.execute(delete(tags).where(tags.c.id == e.aggregate_id))


async def project_tag_bound(conn: AsyncConnection, e: Envelope[ev.TagBound]) -> None:
    p = e.payload
    await lock(conn, p.target_id)
    if await buried(conn, [p.target_id]):
        return  # applied after the dataset's deletion (another partition): unbound by it
    # Binding a bound target again keeps the first binding. Only this tag's events add
    # its bindings, and the runner applies them one at a time: reading first is safe.
    bound = await conn.scalar(select(tag_bindings.c.tag_id).where(
        tag_bindings.c.tag_id == e.aggregate_id, tag_bindings.c.target_id == p.target_id))
    if bound is None:
        await conn.execute(insert(tag_bindings).values(
            tag_id=e.aggregate_id, target_id=p.target_id, tenant_id=e.tenant_id,
            created_by=p.created_by, created_at=e.occurred_at))


async def project_tag_unbound(conn: AsyncConnection, e: Envelope[ev.TagUnbound]) -> None:
    await conn.execute(delete(tag_bindings).where(
        tag_bindings.c.tag_id == e.aggregate_id,
        tag_bindings.c.target_id == e.payload.target_id))


# --- metadata --------------------------------------------------------------------------------


async def project_metadata_field_added(conn: AsyncConnection,
                                       e: Envelope[ev.DatasetMetadataFieldAdded]) -> None:
    p = e.payload
    await conn.execute(insert(dataset_metadata_fields).values(
        id=p.metadata_id, tenant_id=e.tenant_id, dataset_id=e.aggregate_id,
        name=p.name, type=p.type, created_by=p.created_by,
        created_at=e.occurred_at, updated_by=p.created_by, updated_at=e.occurred_at))


async def project_metadata_field_renamed(conn: AsyncConnection,
                                         e: Envelope[ev.DatasetMetadataFieldRenamed]) -> None:
    p = e.payload
    await conn.execute(update(dataset_metadata_fields).where(
        dataset_metadata_fields.c.id == p.metadata_id).values(
        name=p.name, updated_by=p.updated_by, updated_at=e.occurred_at))


async def project_metadata_field_deleted(conn: AsyncConnection,
                                         e: Envelope[ev.DatasetMetadataFieldDeleted]) -> None:
    field_id = str(e.payload.metadata_id)
    # Exclusive: documents' values written concurrently either are here to tidy, or wait
    # and see the tombstone.
    await lock(conn, e.aggregate_id, exclusive=True)
    await bury(conn, e.payload.metadata_id, METADATA_FIELD, e.occurred_at)
    await conn.execute(delete(dataset_metadata_fields).where(
        dataset_metadata_fields.c.id == e.payload.metadata_id))
    # Tidy the documents' values (reads ignore them anyway once the field is gone), in
    # Python so that it runs on any database. The rows stay locked until commit, so a
    # document's own metadata event, applied concurrently, cannot be lost (SQLite: no-op).
    rows = await conn.execute(select(documents.c.id, documents.c.doc_metadata).where(
        documents.c.dataset_id == e.aggregate_id).with_for_update())
    tidied = [{"doc_id": doc_id, "values": {k: v for k, v in values.items() if k != field_id}}
              for doc_id, values in rows if field_id in values]
    if tidied:
        await conn.execute(update(documents).where(documents.c.id == bindparam("doc_id"))
                           .values(doc_metadata=bindparam("values")), tidied)


async def project_built_in_fields_toggled(conn: AsyncConnection,
                                          e: Envelope[ev.DatasetBuiltInFieldsToggled]) -> None:
    await conn.execute(update(datasets).where(datasets.c.id == e.aggregate_id)
                       .values(built_in_field_enabled=e.payload.enabled))


async def project_document_metadata_updated(conn: AsyncConnection,
                                            e: Envelope[ev.DocumentMetadataUpdated]) -> None:
    dataset_id = await conn.scalar(select(documents.c.dataset_id).where(
        documents.c.id == e.aggregate_id))
    if dataset_id is None:
        return  # deleted with its dataset
    await lock(conn, dataset_id)
    # Values of a field deleted already (applied first, from the dataset's partition) go, as
    # the deletion's tidy-up would have taken them.
    fields = _field_ids(e.payload.values)
    gone = await buried(conn, fields.values())
    values = {k: v for k, v in e.payload.values.items() if fields.get(k) not in gone}
    await conn.execute(update(documents).where(documents.c.id == e.aggregate_id)
                       .values(doc_metadata=values, updated_at=e.occurred_at))


def _field_ids(values: dict[str, Any]) -> dict[str, UUID]:
    """Key -> field id (a key that is no id names no field whose deletion concerns it)."""
    ids = {}
    for key in values:
        try:
            ids[key] = UUID(key)
        except ValueError:
            continue
    return ids


PROJECTORS = projectors(
    project_tag_created, project_tag_renamed, project_tag_deleted, project_tag_bound,
    project_tag_unbound, project_metadata_field_added, project_metadata_field_renamed,
    project_metadata_field_deleted, project_built_in_fields_toggled,
    project_document_metadata_updated,
    # name claims are write-side uniqueness; the read model shows the tag's name
    ignore=[ev.TagNameClaimed, ev.TagNameReleased],
)
