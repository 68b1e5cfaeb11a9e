"""What node executors may use (`NodeCall.services`): one dataclass, built once per engine
process by `workflow_services` from the worker container's members. An executor family
that needs something more adds a member here (with its type) and one line to
`workflow_services`; the engine's processor factory passes the container's members through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.embeddings.models import EmbeddingModels
from adapters.kv.base import KeyValueStore
from adapters.llm.clients import ModelClients
from adapters.sandbox.base import CodeSandbox
from adapters.sandbox.bubblewrap import BubblewrapSandbox
from adapters.storage.base import Storage
from adapters.vector.base import VectorStore
from config import Settings
from events.store import EventStore
from projections.knowledge.retrieval import Retriever
from projections.platform.models import ResolvedModel, ResolveModel, model_resolver
from projections.read_cache import NoticedCache
from projections.versions import ReadModels


@dataclass(frozen=True)
class WorkflowServices:
    settings: Settings
    engine: AsyncEngine  # the active read model (datasets, models, conversations)
    read_models: ReadModels
    kv: KeyValueStore  # task streams, stop requests
    storage: Storage  # large node outputs, uploaded files
    store: EventStore  # the runs' histories
    embedding_models: EmbeddingModels
    vectors: VectorStore
    keywords: VectorStore
    sandbox: CodeSandbox  # code and template-transform nodes (adapters/sandbox/)
    # the model nodes (llm, question-classifier, parameter-extractor, knowledge-retrieval)
    resolve_model: ResolveModel  # the workspace's llm by (tenant, provider, name)
    retriever: Retriever  # knowledge retrieval over the datasets' indexes
    llm_clients: ModelClients  # one client per model endpoint and key, for the process


def workflow_services(*, settings: Settings, engine: AsyncEngine, read_models: ReadModels,
                      kv: KeyValueStore, storage: Storage, store: EventStore,
                      embedding_models: EmbeddingModels, vectors: VectorStore,
                      keywords: VectorStore,
                      models: NoticedCache[Any, ResolvedModel] | None = None
                      ) -> WorkflowServices:
    """`models` keeps the resolved models between runs (evicted by projection notices)."""
    return WorkflowServices(
        settings=settings, engine=engine, read_models=read_models, kv=kv, storage=storage,
        store=store, embedding_models=embedding_models, vectors=vectors, keywords=keywords,
        sandbox=BubblewrapSandbox(),
        resolve_model=model_resolver(lambda: read_models.engine, settings.SECRET_KEY, "llm",
                                     models),
        retriever=Retriever(engine, embedding_models, vectors, keywords, settings.SECRET_KEY),
        llm_clients=ModelClients())
