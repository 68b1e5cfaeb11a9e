"""Knowledge Service API, continued: tags, metadata, child chunks (`dataset-…` keys), per
Dify's spec. Every write is a command answered once its events are projected (`_send`).

Included before the main knowledge router: `/v1/datasets/tags` must not be taken for a
dataset id by `/v1/datasets/{dataset_id}`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response

from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import get_container, maybe_uuid, parse_id
from gateway.knowledge.datasets import (
    LimitParam,
    PageParam,
    _dataset,
    _document,
    _segment,
    _send,
    page_size,
)
from gateway.knowledge.views import child_chunk_view, metadata_field_view, tag_view
from projections.knowledge import meta_queries as kmq
from schemas.errors import (
    BadRequest,
    ChildChunkNotFound,
    MetadataNotFound,
    TagNotFound,
)
from schemas.knowledge import api
from schemas.knowledge import commands as cmd
from schemas.knowledge.naming import BUILT_IN_METADATA_FIELDS, HIERARCHICAL

router = APIRouter(prefix="/v1/datasets")


# --- tags ---------------------------------------------------------------------------------------


async def _tag(request: Request, key: ApiKeyPrincipal, tag_id: UUID) -> dict[str, Any]:
    row = await kmq.tag(get_container(request).engine, key.tenant_id, tag_id)
    if row is None:
        raise TagNotFound()
    return row


@router.post("/tags")
async def create_tag(request: Request, body: api.CreateTagRequest,
                     key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    tag_id = uuid4()
    await _send(request, key, cmd.CreateTag(tag_id=tag_id, name=body.name), tag_id)
    return tag_view(await _tag(request, key, tag_id))


@router.get("/tags")
async def list_tags(request: Request, key: ApiKeyPrincipal = DatasetKey,
                    keyword: Annotated[str | None, Query(max_length=50)] = None,
                    ) -> list[dict[str, Any]]:
    rows = await kmq.list_tags(get_container(request).engine, key.tenant_id, keyword)
    return [tag_view(r) for r in rows]


@router.patch("/tags")
async def update_tag(request: Request, body: api.UpdateTagRequest,
                     key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    tag = await _tag(request, key, parse_id(body.tag_id, TagNotFound))
    await _send(request, key, cmd.RenameTag(tag_id=tag["id"], name=body.name), tag["id"])
    return tag_view(await _tag(request, key, tag["id"]))


@router.delete("/tags", status_code=204)
async def delete_tag(request: Request, body: api.DeleteTagRequest,
                     key: ApiKeyPrincipal = DatasetKey) -> Response:
    tag = await _tag(request, key, parse_id(body.tag_id, TagNotFound))
    await _send(request, key, cmd.DeleteTag(tag_id=tag["id"]), tag["id"])
    return Response(status_code=204)


def _tag_ids(values: list[str]) -> list[UUID]:
    # Unknown (or malformed) tag ids are ignored, as Dify's spec says.
    return list(dict.fromkeys(t for t in (maybe_uuid(v) for v in values) if t))


@router.post("/tags/binding", status_code=204)
async def bind_tags(request: Request, body: api.TagBindingRequest,
                    key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await _dataset(request, key, body.target_id)
    if tag_ids := _tag_ids(body.tag_ids):
        # Keyed by the dataset: one dataset's bindings change in order.
        await _send(request, key, cmd.BindTags(target_id=dataset["id"], tag_ids=tag_ids),
                    dataset["id"])
    return Response(status_code=204)


@router.post("/tags/unbinding", status_code=204)
async def unbind_tags(request: Request, body: api.TagUnbindingRequest,
                      key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await _dataset(request, key, body.target_id)
    if tag_ids := _tag_ids(body.all_tag_ids()):
        await _send(request, key, cmd.UnbindTags(target_id=dataset["id"], tag_ids=tag_ids),
                    dataset["id"])
    return Response(status_code=204)


@router.get("/{dataset_id}/tags")
async def dataset_tags(request: Request, dataset_id: str,
                       key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await _dataset(request, key, dataset_id)
    rows = await kmq.dataset_tags(get_container(request).engine, dataset["id"])
    return {"data": [{"id": str(r["id"]), "name": r["name"]} for r in rows],
            "total": len(rows)}


# --- metadata -----------------------------------------------------------------------------------


async def _field(request: Request, dataset: dict[str, Any], metadata_id: str) -> dict[str, Any]:
    row = await kmq.metadata_field(get_container(request).engine, dataset["id"],
                                   parse_id(metadata_id, MetadataNotFound))
    if row is None:
        raise MetadataNotFound()
    return row


@router.post("/{dataset_id}/metadata", status_code=201)
async def create_metadata(request: Request, dataset_id: str, body: api.CreateMetadataRequest,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await _dataset(request, key, dataset_id)
    metadata_id = uuid4()
    await _send(request, key, cmd.AddMetadataField(
        dataset_id=dataset["id"], metadata_id=metadata_id, name=body.name, type=body.type),
        dataset["id"])
    return metadata_field_view(await _field(request, dataset, str(metadata_id)))


@router.get("/{dataset_id}/metadata")
async def list_metadata(request: Request, dataset_id: str,
                        key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await _dataset(request, key, dataset_id)
    rows = await kmq.metadata_fields(get_container(request).engine, dataset["id"])
    return {"doc_metadata": [{**metadata_field_view(r), "count": r["count"]} for r in rows],
            "built_in_field_enabled": bool(dataset["built_in_field_enabled"])}


@router.get("/{dataset_id}/metadata/built-in")
async def built_in_metadata(request: Request, dataset_id: str,
                            key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    await _dataset(request, key, dataset_id)
    return {"fields": [{"name": name, "type": kind}
                       for name, kind in BUILT_IN_METADATA_FIELDS.items()]}


@router.post("/{dataset_id}/metadata/built-in/{action}")
async def toggle_built_in_metadata(request: Request, dataset_id: str, action: str,
                                   key: ApiKeyPrincipal = DatasetKey) -> dict[str, str]:
    if action not in ("enable", "disable"):
        raise BadRequest(f"Invalid action {action!r}; use enable or disable.")
    dataset = await _dataset(request, key, dataset_id)
    await _send(request, key, cmd.ToggleBuiltInMetadataFields(
        dataset_id=dataset["id"], enabled=action == "enable"), dataset["id"])
    return {"result": "success"}


@router.patch("/{dataset_id}/metadata/{metadata_id}")
async def update_metadata(request: Request, dataset_id: str, metadata_id: str,
                          body: api.UpdateMetadataRequest,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await _dataset(request, key, dataset_id)
    field = await _field(request, dataset, metadata_id)
    await _send(request, key, cmd.RenameMetadataField(
        dataset_id=dataset["id"], metadata_id=field["id"], name=body.name), dataset["id"])
    return metadata_field_view(await _field(request, dataset, metadata_id))


@router.delete("/{dataset_id}/metadata/{metadata_id}", status_code=204)
async def delete_metadata(request: Request, dataset_id: str, metadata_id: str,
                          key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await _dataset(request, key, dataset_id)
    field = await _field(request, dataset, metadata_id)
    await _send(request, key, cmd.DeleteMetadataField(
        dataset_id=dataset["id"], metadata_id=field["id"]), dataset["id"])
    return Response(status_code=204)


@router.post("/{dataset_id}/documents/metadata")
async def update_documents_metadata(request: Request, dataset_id: str,
                                    body: api.UpdateDocumentsMetadataRequest,
                                    key: ApiKeyPrincipal = DatasetKey) -> dict[str, str]:
    engine = get_container(request).engine
    dataset = await _dataset(request, key, dataset_id)
    fields = {r["id"] for r in await kmq.metadata_fields(engine, dataset["id"])}
    operations = []
    for op in body.operation_data:
        document_id = maybe_uuid(op.document_id)
        # Dify answers an unknown document in this batch with 400, not 404.
        if document_id is None or not await kmq.document_ids_in(engine, dataset["id"],
                                                                [document_id]):
            raise BadRequest("Document not found.")
        values = []
        for item in op.metadata_list:
            metadata_id = maybe_uuid(item.id)
            if metadata_id is None or metadata_id not in fields:
                raise BadRequest(f"Metadata field {item.id} ({item.name}) not found in this "
                                 "knowledge base.")
            values.append(cmd.MetadataValue(metadata_id=metadata_id, value=item.value))
        operations.append(cmd.DocumentMetadataOperation(
            document_id=document_id, values=values, partial_update=op.partial_update))
    if operations:
        await _send(request, key, cmd.UpdateDocumentsMetadata(
            dataset_id=dataset["id"], operations=operations), dataset["id"])
    return {"result": "success"}


# --- child chunks (hierarchical documents) ------------------------------------------------------

CHILD_CHUNKS = "/{dataset_id}/documents/{document_id}/segments/{segment_id}/child_chunks"


async def _parent(request: Request, key: ApiKeyPrincipal, dataset_id: str, document_id: str,
                  segment_id: str, writing: bool = False
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
    segment = await _segment(request, document, segment_id)
    if writing and document["doc_form"] != HIERARCHICAL:
        raise BadRequest("Child chunks exist only in documents with doc_form "
                         "hierarchical_model (parent-child chunking).")
    return dataset, document, segment


def _child(segment: dict[str, Any], child_chunk_id: str) -> dict[str, Any]:
    target = str(parse_id(child_chunk_id, ChildChunkNotFound))
    child = next((c for c in segment["child_chunks"] if c["id"] == target), None)
    if child is None:
        raise ChildChunkNotFound()
    return child


@router.post(CHILD_CHUNKS)
async def create_child_chunk(request: Request, dataset_id: str, document_id: str,
                             segment_id: str, body: api.ChildChunkRequest,
                             key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset, document, segment = await _parent(request, key, dataset_id, document_id,
                                               segment_id, writing=True)
    child_id = uuid4()
    await _send(request, key, cmd.CreateChildChunk(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"],
        child_chunk_id=child_id, content=body.content), document["id"])
    updated = await _segment(request, document, segment_id)
    return {"data": child_chunk_view(updated, _child(updated, str(child_id)))}


@router.get(CHILD_CHUNKS)
async def list_child_chunks(request: Request, dataset_id: str, document_id: str,
                            segment_id: str, key: ApiKeyPrincipal = DatasetKey,
                            page: PageParam = 1, limit: LimitParam = 20,
                            keyword: Annotated[str | None, Query(max_length=255)] = None,
                            ) -> dict[str, Any]:
    _, _, segment = await _parent(request, key, dataset_id, document_id, segment_id)
    limit = page_size(limit)
    children = sorted(segment["child_chunks"], key=lambda c: c["position"])
    if keyword:
        children = [c for c in children if keyword.lower() in c["content"].lower()]
    total = len(children)
    shown = children[(page - 1) * limit:page * limit]
    return {"data": [child_chunk_view(segment, c) for c in shown], "total": total,
            "total_pages": math.ceil(total / limit), "page": page, "limit": limit}


@router.patch(CHILD_CHUNKS + "/{child_chunk_id}")
async def update_child_chunk(request: Request, dataset_id: str, document_id: str,
                             segment_id: str, child_chunk_id: str, body: api.ChildChunkRequest,
                             key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset, document, segment = await _parent(request, key, dataset_id, document_id,
                                               segment_id, writing=True)
    child = _child(segment, child_chunk_id)
    await _send(request, key, cmd.UpdateChildChunk(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"],
        child_chunk_id=child["id"], content=body.content), document["id"])
    updated = await _segment(request, document, segment_id)
    return {"data": child_chunk_view(updated, _child(updated, child["id"]))}


@router.delete(CHILD_CHUNKS + "/{child_chunk_id}", status_code=204)
async def delete_child_chunk(request: Request, dataset_id: str, document_id: str,
                             segment_id: str, child_chunk_id: str,
                             key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset, document, segment = await _parent(request, key, dataset_id, document_id,
                                               segment_id, writing=True)
    child = _child(segment, child_chunk_id)
    await _send(request, key, cmd.DeleteChildChunk(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"],
        child_chunk_id=child["id"]), document["id"])
    return Response(status_code=204)
