"""Knowledge Service API: retrieve / hit-testing over a dataset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from adapters.llm.openai_protocol import ProviderError
from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import get_container
from gateway.knowledge.hits import segment_hit_batcher
from gateway.knowledge.lookups import dataset_of
from gateway.knowledge.views import retrieval_record_view
from projections.knowledge.retrieval import SEARCH_METHODS, RetrievalSettings, Retriever
from schemas.errors import CompletionRequestError
from schemas.knowledge import api

router = APIRouter(prefix="/v1/datasets")


@router.post("/{dataset_id}/retrieve")
@router.post("/{dataset_id}/hit-testing")
async def retrieve(request: Request, dataset_id: str, body: api.RetrieveRequest,
                   key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    c = get_container(request)
    dataset = await dataset_of(request, key, dataset_id)
    model = body.retrieval_model.model_dump(exclude_unset=True) if body.retrieval_model else None
    settings = RetrievalSettings.from_dify(model, dataset["retrieval_model"] or {},
                                           economy=dataset["indexing_technique"] == "economy")
    assert settings.search_method in SEARCH_METHODS
    retriever = Retriever(c.engine, c.embedding_models, c.vectors, c.keywords,
                          c.settings.SECRET_KEY)
    try:
        found = await retriever.retrieve(dataset, body.query, settings)
    except ProviderError as exc:  # the rerank model failed (Dify: completion_request_error)
        raise CompletionRequestError(exc.message or str(exc)) from exc
    segment_hit_batcher(request).record(key.tenant_id, dataset["id"],
                                        [(f.row["document_id"], f.row["id"]) for f in found])
    return {"query": {"content": body.query},
            "records": [retrieval_record_view(f) for f in found]}
