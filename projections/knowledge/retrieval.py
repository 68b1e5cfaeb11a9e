"""Retrieval: semantic, full-text, keyword and hybrid search over a dataset's chunks,
answered in Dify's `records[{segment{…, document{…}}, child_chunks, score}]` shape."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.embeddings.models import EmbeddingModels, UnknownEmbeddingModel
from adapters.llm.rerank import HTTPReranker, Ranked
from adapters.vector.base import VectorHit, VectorStore
from indexing.lexical import query_terms
from projections.knowledge import queries as kq
from projections.knowledge.metadata_filter import matching_document_ids, parse_conditions
from projections.platform.models import resolve_model
from schemas.errors import BadRequest, ProviderNotInitialized
from schemas.knowledge.api import MetadataFilteringConditions
from schemas.knowledge.naming import keyword_collection, vector_collection

DEFAULT_TOP_K = 4
DEFAULT_VECTOR_WEIGHT = 0.7
RERANK_TIMEOUT = 30.0  # seconds; a retrieval waits for its reranker
SEARCH_METHODS = ("semantic_search", "full_text_search", "keyword_search", "hybrid_search")


@dataclass(frozen=True)
class RerankModel:
    """The rerank model a request names; empty names: the workspace's default one."""
    provider: str
    model: str


@dataclass(frozen=True)
class RetrievalSettings:
    search_method: str
    top_k: int
    score_threshold: float  # on the final scores: when reranked, on the reranker's
    # hybrid search scores vector_weight * semantic + keyword_weight * keyword
    vector_weight: float
    # Dify's retrieval_model.metadata_filtering_conditions (None: no filtering)
    metadata_filter: MetadataFilteringConditions | None = None
    keyword_weight: float = 1 - DEFAULT_VECTOR_WEIGHT
    rerank: RerankModel | None = None  # reranking_enable with reranking_mode reranking_model

    @classmethod
    def from_dify(cls, model: dict[str, Any] | None, dataset_default: dict[str, Any],
                  economy: bool) -> RetrievalSettings:
        merged = {**dataset_default, **(model or {})}
        method = merged.get("search_method") or "semantic_search"
        if economy:
            method = "keyword_search"  # an economy dataset has no vectors to search
        threshold = float(merged.get("score_threshold") or 0.0) \
            if merged.get("score_threshold_enabled") else 0.0
        # Dify's `weights` (reranking_mode weighted_score): the two halves of hybrid search
        weights = merged.get("weights") or {}
        vector_weight = (weights.get("vector_setting") or {}).get("vector_weight")
        vector_weight = float(DEFAULT_VECTOR_WEIGHT if vector_weight is None else vector_weight)
        keyword_weight = (weights.get("keyword_setting") or {}).get("keyword_weight")
        rerank = None
        if merged.get("reranking_enable") and \
                (merged.get("reranking_mode") or "reranking_model") == "reranking_model":
            named = merged.get("reranking_model") or {}
            rerank = RerankModel(str(named.get("reranking_provider_name") or ""),
                                 str(named.get("reranking_model_name") or ""))
        return cls(method, int(merged.get("top_k") or DEFAULT_TOP_K), threshold, vector_weight,
                   parse_conditions(merged.get("metadata_filtering_conditions")),
                   float(1 - vector_weight if keyword_weight is None else keyword_weight),
                   rerank)


class Reranker(Protocol):
    async def rerank(self, query: str, documents: Sequence[str],
                     top_n: int | None = None) -> list[Ranked]: ...


NO_RERANK_MODEL = ("No Embedding Model or Reranking Model available. Please configure a valid "
                   "provider in the Settings -> Model Provider.")  # Dify's words


async def workspace_reranker(engine: AsyncEngine, secret_key: str, tenant_id: UUID,
                             wanted: RerankModel) -> HTTPReranker:
    """The rerank model a request names, else the workspace's default one; none is Dify's
    `provider_not_initialize`, never a silent retrieval without reranking."""
    try:
        model = await resolve_model(engine, secret_key, tenant_id, "rerank",
                                    wanted.provider or None, wanted.model or None)
    except ProviderNotInitialized as exc:
        raise ProviderNotInitialized(NO_RERANK_MODEL) from exc
    return HTTPReranker(model.client(timeout=RERANK_TIMEOUT, max_retries=1), model.model)


@dataclass(frozen=True)
class RetrievedSegment:
    row: dict[str, Any]  # the segment's read-model row, with its document's name
    score: float
    child_hits: list[tuple[str, float]]  # matched child chunks (hierarchical), best first


@dataclass
class Retriever:
    engine: AsyncEngine
    embedding_models: EmbeddingModels
    vectors: VectorStore
    keywords: VectorStore
    secret_key: str  # opens the workspace's rerank model credentials

    async def retrieve(self, dataset: dict[str, Any], query: str,
                       settings: RetrievalSettings) -> list[RetrievedSegment]:
        """The dataset's best segments for the query. With `settings.rerank`, the
        workspace's rerank model orders them (resolved first: no model, no search)."""
        reranker = None if settings.rerank is None else await workspace_reranker(
            self.engine, self.secret_key, dataset["tenant_id"], settings.rerank)
        try:
            scored = await self._search(dataset, query, settings)
            return await self._records(scored, settings, query, reranker)
        finally:
            if reranker is not None:
                await reranker.aclose()

    async def _search(self, dataset: dict[str, Any], query: str,
                      settings: RetrievalSettings) -> dict[str, _Unit]:
        dataset_id: UUID = dataset["id"]
        allowed = await kq.searchable_document_ids(self.engine, dataset_id)
        if settings.metadata_filter is not None:
            # Only documents whose metadata match are searched (unknown names: 400).
            matching = await matching_document_ids(self.engine, dataset,
                                                   settings.metadata_filter, allowed)
            allowed = [d for d in allowed if d in matching]
        if not allowed:
            return {}
        where = {"document_id": allowed}
        economy = dataset["indexing_technique"] == "economy"
        if economy:
            collection = keyword_collection(dataset_id)
        else:
            try:
                model = await self.embedding_models.resolve(
                    dataset["tenant_id"], dataset["embedding_model_provider"],
                    dataset["embedding_model"])
            except UnknownEmbeddingModel as exc:
                raise BadRequest(str(exc)) from None
            # The collection of the dataset's model: the query is embedded in the same space.
            collection = vector_collection(dataset_id, model.provider, model.name)
        # Over-fetch: several hits may be children of one parent or disabled segments.
        k = settings.top_k * 3
        # The index holds CJK text cut into words; the query's words are cut the same way.
        terms = await asyncio.to_thread(query_terms, query)
        if settings.search_method == "keyword_search" or economy:
            scored = _by_unit(await self.keywords.search_by_full_text(collection, terms, k, where))
        elif settings.search_method == "full_text_search":
            scored = _by_unit(await self.vectors.search_by_full_text(collection, terms, k, where))
        else:
            vector = await model.embeddings.embed_query(query)
            semantic = _by_unit(await self.vectors.search_by_vector(collection, vector, k,
                                                                    0.0, where))
            if settings.search_method == "hybrid_search":
                keyword = _by_unit(await self.vectors.search_by_full_text(collection, terms, k,
                                                                          where))
                vw, kw = settings.vector_weight, settings.keyword_weight
                scored = {
                    unit: _Unit(hit=(semantic.get(unit) or keyword[unit]).hit,
                                score=vw * (semantic[unit].score if unit in semantic else 0.0)
                                + kw * (keyword[unit].score if unit in keyword else 0.0))
                    for unit in semantic.keys() | keyword.keys()
                }
            else:
                scored = semantic
        return scored

    async def _records(self, scored: dict[str, _Unit], settings: RetrievalSettings,
                       query: str, reranker: Reranker | None) -> list[RetrievedSegment]:
        rerank = reranker is not None
        by_segment: dict[str, list[_Unit]] = {}
        for unit in scored.values():
            # Reranked, the threshold applies to the reranker's scores, not to these.
            if rerank or unit.score >= settings.score_threshold:
                by_segment.setdefault(unit.hit.metadata["segment_id"], []).append(unit)
        ranked = sorted(by_segment.items(), key=lambda kv: -max(u.score for u in kv[1]))
        rows = await kq.segments_by_id(self.engine, [UUID(s) for s, _ in ranked],
                                       only_enabled=True)
        found = []
        for segment_id, units in ranked:
            row = rows.get(UUID(segment_id))
            if row is None:
                continue  # disabled, or of a document's superseded split
            children = {c["id"] for c in row["child_chunks"]}
            found.append(RetrievedSegment(
                row=row, score=max(u.score for u in units),
                child_hits=[(u.hit.id, u.score) for u in sorted(units, key=lambda u: -u.score)
                            if u.hit.id in children]))
            if len(found) == settings.top_k and not rerank:
                break
        if reranker is not None and found:
            # The reranker sees every candidate and decides the order and the scores.
            ranks = await reranker.rerank(query, [f.row["content"] for f in found],
                                               top_n=settings.top_k)
            found = [replace(found[r.index], score=r.score) for r in ranks
                     if r.score >= settings.score_threshold]
        return found[:settings.top_k]


@dataclass
class _Unit:
    hit: VectorHit
    score: float


def _by_unit(hits: list[VectorHit]) -> dict[str, _Unit]:
    return {h.id: _Unit(hit=h, score=h.score) for h in hits}
