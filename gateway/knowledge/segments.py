"""Knowledge Service API: a document's segments, written by hand or listed."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Query, Request, Response

from adapters.embeddings.base import EmbeddingProvider
from adapters.embeddings.models import UnknownEmbeddingModel
from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import get_container
from gateway.knowledge.deps import LimitParam, PageParam, check_length, page_size, send
from gateway.knowledge.lookups import dataset_of, document_of, segment_of
from gateway.knowledge.views import segment_view
from indexing.lexical import extract_keywords
from projections.knowledge import queries as kq
from schemas.errors import BadRequest
from schemas.knowledge import api
from schemas.knowledge import commands as cmd

router = APIRouter(prefix="/v1/datasets")


async def _embeddings_of(request: Request, dataset: dict[str, Any]) -> EmbeddingProvider:
    """The dataset's model: its token counts size the segments written by hand."""
    try:
        model = await get_container(request).embedding_models.resolve(
            dataset["tenant_id"], dataset["embedding_model_provider"],
            dataset["embedding_model"])
    except UnknownEmbeddingModel as exc:
        raise BadRequest(str(exc)) from None
    return model.embeddings


async def _keywords(dataset: dict[str, Any], content: str | None,
                    given: list[str] | None) -> list[str] | None:
    """A segment's keywords: the ones given, else, in an economy dataset (searched by
    keyword), those extracted from its new content, as Dify does (jieba TF-IDF; None when
    nothing changes)."""
    if given is not None or not content or dataset["indexing_technique"] != "economy":
        return given
    return await asyncio.to_thread(extract_keywords, content)


@router.post("/{dataset_id}/documents/{document_id}/segments")
async def create_segments(request: Request, dataset_id: str, document_id: str,
                          body: api.CreateSegmentsRequest,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    c = get_container(request)
    for n, s in enumerate(body.segments):
        check_length(f"segments.{n}.content", s.content, c.settings.SEGMENT_MAX_LENGTH)
        check_length(f"segments.{n}.answer", s.answer, c.settings.SEGMENT_MAX_LENGTH)
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    embeddings = await _embeddings_of(request, dataset)
    new = [cmd.NewSegment(segment_id=uuid4(), content=s.content, answer=s.answer,
                          keywords=await _keywords(dataset, s.content, s.keywords or None) or [],
                          word_count=len(s.content), tokens=embeddings.count_tokens(s.content))
           for s in body.segments]
    await send(request, key, cmd.CreateSegments(
        dataset_id=dataset["id"], document_id=document["id"],
        first_position=await kq.next_segment_position(c.engine, document["id"]), segments=new),
        document["id"])
    rows = await kq.segments_by_id(c.engine, [s.segment_id for s in new])
    return {"data": [segment_view(rows[s.segment_id]) for s in new],
            "doc_form": document["doc_form"]}


@router.get("/{dataset_id}/documents/{document_id}/segments")
async def list_segments(
    request: Request, dataset_id: str, document_id: str, key: ApiKeyPrincipal = DatasetKey,
    page: PageParam = 1, limit: LimitParam = 20,
    keyword: Annotated[str | None, Query(max_length=255)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    limit = page_size(limit)
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    result = await kq.list_segments(get_container(request).engine, document["id"], page=page,
                                    limit=limit, keyword=keyword, status=status)
    return {"data": [segment_view(r) for r in result.items], "doc_form": document["doc_form"],
            "has_more": page * limit < result.total, "limit": limit, "total": result.total,
            "page": page}


@router.get("/{dataset_id}/documents/{document_id}/segments/{segment_id}")
async def get_segment(request: Request, dataset_id: str, document_id: str, segment_id: str,
                      key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    return {"data": segment_view(await segment_of(request, document, segment_id)),
            "doc_form": document["doc_form"]}


@router.post("/{dataset_id}/documents/{document_id}/segments/{segment_id}")
async def update_segment(request: Request, dataset_id: str, document_id: str, segment_id: str,
                         body: api.UpdateSegmentRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    c = get_container(request)
    s = body.segment
    check_length("segment.content", s.content, c.settings.SEGMENT_MAX_LENGTH)
    check_length("segment.answer", s.answer, c.settings.SEGMENT_MAX_LENGTH)
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    segment = await segment_of(request, document, segment_id)
    await send(request, key, cmd.UpdateSegment(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"],
        content=s.content, answer=s.answer, enabled=s.enabled,
        keywords=await _keywords(dataset, s.content, s.keywords),
        word_count=len(s.content) if s.content else None,
        tokens=(await _embeddings_of(request, dataset)).count_tokens(s.content)
        if s.content else None,
    ), document["id"])
    return {"data": segment_view(await segment_of(request, document, segment_id)),
            "doc_form": document["doc_form"]}


@router.delete("/{dataset_id}/documents/{document_id}/segments/{segment_id}", status_code=204)
async def delete_segment(request: Request, dataset_id: str, document_id: str, segment_id: str,
                         key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    segment = await segment_of(request, document, segment_id)
    await send(request, key, cmd.DeleteSegment(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"]),
        document["id"])
    return Response(status_code=204)
