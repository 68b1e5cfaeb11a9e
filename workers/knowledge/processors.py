"""The knowledge context's stream processors: the two indexing lanes and cleanup. Their work
topics, routes and roles are declared in `contexts/knowledge.py`.

The lanes are separate consumer groups, so a bulk backlog never delays a priority job and
each lane scales on its own.
"""

from __future__ import annotations

from functools import partial

from adapters.bus.base import Message
from adapters.embeddings.models import EmbeddingModels
from adapters.storage.base import Storage
from adapters.vector.base import VectorStore
from events.registry import EventTypes
from events.store import EventStore
from schemas.knowledge import events as ev
from workers.knowledge import cleanup
from workers.knowledge.indexing import (
    IndexingDeps,
    fail_document,
    index_segment,
    run_indexing_job,
)
from workers.runtime import Processor, by_type, decoding


def indexing_processor(topic: str, *, event_types: EventTypes, store: EventStore,
                       storage: Storage, embedding_models: EmbeddingModels,
                       vectors: VectorStore, keywords: VectorStore) -> Processor:
    deps = IndexingDeps(store=store, storage=storage, embedding_models=embedding_models,
                        vectors=vectors, keywords=keywords)

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        await fail_document(deps, event_types.envelope_from_json(message.value), exc)

    return Processor(group=topic, topics=[topic], on_dead_letter=on_dead_letter,
                     handle=decoding(event_types, by_type({
                         ev.DocumentIndexingRequested: partial(run_indexing_job, deps),
                         ev.DocumentIndexingResumed: partial(run_indexing_job, deps),
                         ev.SegmentCreated: partial(index_segment, deps),
                         ev.SegmentUpdated: partial(index_segment, deps),
                     })))


def cleanup_processor(topic: str, *, event_types: EventTypes, store: EventStore,
                      storage: Storage, embedding_models: EmbeddingModels,
                      vectors: VectorStore, keywords: VectorStore) -> Processor:
    deps = IndexingDeps(store=store, storage=storage, embedding_models=embedding_models,
                        vectors=vectors, keywords=keywords)
    return Processor(group=topic, topics=[topic], handle=decoding(event_types, by_type({
        ev.DocumentDeleted: partial(cleanup.document_deleted, deps),
        ev.DatasetDeleted: partial(cleanup.dataset_deleted, deps),
        ev.DatasetUpdated: partial(cleanup.dataset_updated, deps),
        ev.SegmentDeleted: partial(cleanup.segment_deleted, deps),
    })))
