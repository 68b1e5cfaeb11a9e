"""Knowledge Service API (/v1/datasets…, `dataset-…` keys, per Dify's spec): datasets."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response

from adapters.embeddings.models import UnknownEmbeddingModel
from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import get_container, maybe_uuid
from gateway.knowledge.deps import LimitParam, PageParam, page_size, send
from gateway.knowledge.lookups import dataset_of
from gateway.knowledge.views import dataset_view
from projections.knowledge import queries as kq
from schemas.errors import BadRequest
from schemas.knowledge import api
from schemas.knowledge import commands as cmd

router = APIRouter(prefix="/v1/datasets")


async def _embedding_model(request: Request, tenant_id: UUID, provider: str | None,
                           model: str | None) -> tuple[str, str]:
    """The (provider, model) a request names; unset: the configured default. A model of
    the workspace's own providers must be connected there (else provider_not_initialize)."""
    models = get_container(request).embedding_models
    try:
        named = models.key(provider, model)
        if named not in models.offered:
            await models.resolve(tenant_id, *named)
    except UnknownEmbeddingModel as exc:
        raise BadRequest(str(exc)) from None
    return named


@router.post("")
async def create_dataset(request: Request, body: api.CreateDatasetRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    if body.provider == "external":
        raise BadRequest("External knowledge bases are not supported.")
    provider, model = await _embedding_model(request, key.tenant_id,
                                             body.embedding_model_provider, body.embedding_model)
    dataset_id = uuid4()
    await send(request, key, cmd.CreateDataset(
        dataset_id=dataset_id, name=body.name, description=body.description,
        indexing_technique=body.indexing_technique, permission=body.permission,
        embedding_model=model, embedding_model_provider=provider,
        retrieval_model=(body.retrieval_model or api.RetrievalModelBody()).model_dump(),
    ), dataset_id)
    return dataset_view(await dataset_of(request, key, str(dataset_id)))


@router.get("")
async def list_datasets(request: Request, key: ApiKeyPrincipal = DatasetKey,
                        page: PageParam = 1, limit: LimitParam = 20,
                        keyword: Annotated[str | None, Query(max_length=255)] = None,
                        tag_ids: Annotated[list[str] | None, Query()] = None,
                        ) -> dict[str, Any]:
    limit = page_size(limit)
    # tag_ids: datasets bound to any of them; a malformed id matches nothing
    tags = None if not tag_ids else [t for t in (maybe_uuid(v) for v in tag_ids) if t]
    result = await kq.list_datasets(get_container(request).engine, key.tenant_id, page=page,
                                    limit=limit, keyword=keyword, tag_ids=tags)
    return {"data": [dataset_view(r) for r in result.items],
            "has_more": page * limit < result.total, "limit": limit, "total": result.total,
            "page": page}


@router.get("/{dataset_id}")
async def get_dataset(request: Request, dataset_id: str,
                      key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    return dataset_view(await dataset_of(request, key, dataset_id))


@router.patch("/{dataset_id}")
async def update_dataset(request: Request, dataset_id: str, body: api.UpdateDatasetRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await dataset_of(request, key, dataset_id)
    changes = body.model_dump(exclude_unset=True)
    if body.retrieval_model is not None:
        changes["retrieval_model"] = body.retrieval_model.model_dump()
    if body.embedding_model is not None or body.embedding_model_provider is not None:
        # A new model re-embeds every document: the handler re-indexes those listed here.
        provider, model = await _embedding_model(
            request, key.tenant_id, body.embedding_model_provider or (
                None if body.embedding_model else dataset["embedding_model_provider"]),
            body.embedding_model)
        changes.update(embedding_model_provider=provider, embedding_model=model,
                       document_ids=await kq.document_ids(get_container(request).engine,
                                                          dataset["id"]))
    await send(request, key, cmd.UpdateDataset(dataset_id=dataset["id"], **changes),
                dataset["id"])
    return dataset_view(await dataset_of(request, key, dataset_id))


@router.delete("/{dataset_id}", status_code=204)
async def delete_dataset(request: Request, dataset_id: str,
                         key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await dataset_of(request, key, dataset_id)
    await send(request, key, cmd.DeleteDataset(dataset_id=dataset["id"]), dataset["id"])
    return Response(status_code=204)
