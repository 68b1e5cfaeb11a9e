"""Knowledge Service API: child chunks of a segment (hierarchical documents)."""

from __future__ import annotations

import math
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Query, Request, Response

from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import parse_id
from gateway.knowledge.deps import LimitParam, PageParam, page_size, send
from gateway.knowledge.lookups import dataset_of, document_of, segment_of
from gateway.knowledge.views import child_chunk_view
from schemas.errors import BadRequest, ChildChunkNotFound
from schemas.knowledge import api
from schemas.knowledge import commands as cmd
from schemas.knowledge.naming import HIERARCHICAL

router = APIRouter(prefix="/v1/datasets")


CHILD_CHUNKS = "/{dataset_id}/documents/{document_id}/segments/{segment_id}/child_chunks"


async def _parent(request: Request, key: ApiKeyPrincipal, dataset_id: str, document_id: str,
                  segment_id: str, writing: bool = False
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    segment = await segment_of(request, document, segment_id)
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
    await send(request, key, cmd.CreateChildChunk(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"],
        child_chunk_id=child_id, content=body.content), document["id"])
    updated = await segment_of(request, document, segment_id)
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
    await send(request, key, cmd.UpdateChildChunk(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"],
        child_chunk_id=child["id"], content=body.content), document["id"])
    updated = await segment_of(request, document, segment_id)
    return {"data": child_chunk_view(updated, _child(updated, child["id"]))}


@router.delete(CHILD_CHUNKS + "/{child_chunk_id}", status_code=204)
async def delete_child_chunk(request: Request, dataset_id: str, document_id: str,
                             segment_id: str, child_chunk_id: str,
                             key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset, document, segment = await _parent(request, key, dataset_id, document_id,
                                               segment_id, writing=True)
    child = _child(segment, child_chunk_id)
    await send(request, key, cmd.DeleteChildChunk(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"],
        child_chunk_id=child["id"]), document["id"])
    return Response(status_code=204)
