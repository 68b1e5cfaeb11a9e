"""Command handlers for dataset metadata (fields and document values) and child chunks.

Metadata fields are events of the Dataset aggregate (which keeps their names unique);
a document's values are events of its Document aggregate, keyed by field id so renaming a
field rewrites nothing. Child chunks live in their Segment: an edit records the segment
with its new child list, which the indexing processor re-embeds.
"""

from __future__ import annotations

from typing import Any

from commands.knowledge.aggregates import Segment, visible_dataset, visible_document
from commands.registry import command_handlers
from commands.unit_of_work import UnitOfWork
from schemas.errors import BadRequest, ChildChunkNotFound, DocumentNotFound
from schemas.knowledge import commands as cmd
from schemas.knowledge import events as ev
from schemas.knowledge.naming import HIERARCHICAL, as_number, to_timestamp

# --- metadata fields ----------------------------------------------------------------------------


def add_metadata_field(c: cmd.AddMetadataField, uow: UnitOfWork) -> dict[str, Any]:
    visible_dataset(uow, c.dataset_id).add_metadata_field(c.metadata_id, c.name, c.type, uow.ctx)
    return {"metadata_id": str(c.metadata_id)}


def rename_metadata_field(c: cmd.RenameMetadataField, uow: UnitOfWork) -> dict[str, Any]:
    visible_dataset(uow, c.dataset_id).rename_metadata_field(c.metadata_id, c.name, uow.ctx)
    return {"metadata_id": str(c.metadata_id)}


def delete_metadata_field(c: cmd.DeleteMetadataField, uow: UnitOfWork) -> dict[str, Any]:
    visible_dataset(uow, c.dataset_id).delete_metadata_field(c.metadata_id, uow.ctx)
    return {"metadata_id": str(c.metadata_id)}


def toggle_built_in_fields(c: cmd.ToggleBuiltInMetadataFields,
                           uow: UnitOfWork) -> dict[str, Any]:
    visible_dataset(uow, c.dataset_id).toggle_built_in_fields(c.enabled, uow.ctx)
    return {"dataset_id": str(c.dataset_id)}


def coerce_metadata_value(field: dict[str, str], value: str | int | float | None) -> Any:
    """A value as stored for its field's type: text, a number, or Unix seconds for time."""
    if value is None:
        return None
    kind, name = field["type"], field["name"]
    if kind == "string":
        return value if isinstance(value, str) else str(value)
    if kind == "number":
        number = as_number(value)
        if number is None:
            raise BadRequest(f"Metadata '{name}' is a number; got {value!r}.")
        return number
    seconds = to_timestamp(value)
    if seconds is None:
        raise BadRequest(f"Metadata '{name}' is a time (Unix seconds or ISO 8601); "
                         f"got {value!r}.")
    return seconds


def update_documents_metadata(c: cmd.UpdateDocumentsMetadata,
                              uow: UnitOfWork) -> dict[str, Any]:
    dataset = visible_dataset(uow, c.dataset_id)
    for op in c.operations:
        try:
            document = visible_document(uow, c.dataset_id, op.document_id)
        except DocumentNotFound:
            raise BadRequest("Document not found.") from None  # Dify answers 400 here
        new: dict[str, Any] = {}
        for item in op.values:
            field = dataset.metadata_fields.get(str(item.metadata_id))
            if field is None:
                raise BadRequest(f"Metadata field {item.metadata_id} not found.")
            new[str(item.metadata_id)] = coerce_metadata_value(field, item.value)
        # Values of deleted fields are dropped whenever a document's values are written.
        kept = ({k: v for k, v in document.metadata.items() if k in dataset.metadata_fields}
                if op.partial_update else {})
        document.set_metadata({**kept, **new}, uow.ctx)
    return {"document_ids": [str(op.document_id) for op in c.operations]}


# --- child chunks ------------------------------------------------------------------------------


def _parent(uow: UnitOfWork, c: cmd.CreateChildChunk | cmd.UpdateChildChunk
            | cmd.DeleteChildChunk) -> Segment:
    document = visible_document(uow, c.dataset_id, c.document_id)
    if document.doc_form != HIERARCHICAL:
        raise BadRequest("Child chunks exist only in documents with doc_form "
                         "hierarchical_model (parent-child chunking).")
    if document.status != "completed":
        # A running attempt writes the vectors of its own split; edits would race it.
        raise BadRequest("The document is not indexed yet; edit child chunks once it is "
                         "completed.")
    segment = uow.get(Segment, c.segment_id)
    segment.ensure_live_in(document)
    return segment


def _children(segment: Segment) -> list[ev.ChildChunkData]:
    return list(segment.data.child_chunks)


def create_child_chunk(c: cmd.CreateChildChunk, uow: UnitOfWork) -> dict[str, Any]:
    segment = _parent(uow, c)
    children = _children(segment)
    if any(child.id == c.child_chunk_id for child in children):
        raise BadRequest("Child chunk already exists.")
    children.append(ev.ChildChunkData(
        id=c.child_chunk_id, content=c.content,
        position=max((child.position for child in children), default=0) + 1,
        word_count=len(c.content), type="customized"))
    segment.set_child_chunks(children, uow.ctx)
    return {"child_chunk_id": str(c.child_chunk_id)}


def update_child_chunk(c: cmd.UpdateChildChunk, uow: UnitOfWork) -> dict[str, Any]:
    segment = _parent(uow, c)
    children = _children(segment)
    index = next((i for i, child in enumerate(children) if child.id == c.child_chunk_id), None)
    if index is None:
        raise ChildChunkNotFound()
    if children[index].content != c.content:
        children[index] = children[index].model_copy(update={
            "content": c.content, "word_count": len(c.content), "type": "customized"})
        segment.set_child_chunks(children, uow.ctx)
    return {"child_chunk_id": str(c.child_chunk_id)}


def delete_child_chunk(c: cmd.DeleteChildChunk, uow: UnitOfWork) -> dict[str, Any]:
    segment = _parent(uow, c)
    children = _children(segment)
    kept = [child for child in children if child.id != c.child_chunk_id]
    if len(kept) == len(children):
        raise ChildChunkNotFound()
    segment.set_child_chunks(kept, uow.ctx)
    return {"child_chunk_id": str(c.child_chunk_id)}


HANDLERS = command_handlers(
    add_metadata_field, rename_metadata_field, delete_metadata_field, toggle_built_in_fields,
    update_documents_metadata, create_child_chunk, update_child_chunk, delete_child_chunk,
)
