"""The cleanup processor (Dify's deletion tasks): deleted documents, datasets and segments take
their vectors and stored files with them. Every step is idempotent (deleting what is gone
is a no-op), so a redelivery changes nothing."""

from __future__ import annotations

import asyncio

from adapters.embeddings.models import UnknownEmbeddingModel
from commands.knowledge.aggregates import Segment
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from schemas.knowledge import events as ev
from schemas.knowledge.naming import vector_collection
from workers.knowledge.indexing import (
    IndexingDeps,
    caused_by,
    collections_of,
    remove_dataset_data,
    remove_document_data,
)


async def document_deleted(deps: IndexingDeps, event: Envelope[ev.DocumentDeleted]) -> None:
    await remove_document_data(deps, event.payload.dataset_id, event.aggregate_id)


async def dataset_deleted(deps: IndexingDeps, event: Envelope[ev.DatasetDeleted]) -> None:
    await remove_dataset_data(deps, event.aggregate_id)


async def dataset_updated(deps: IndexingDeps, event: Envelope[ev.DatasetUpdated]) -> None:
    """A dataset that switched embedding models is re-indexed into the new model's
    collection; the other models' collections are dropped (the search reads only the
    current one). Decided on the dataset's latest state, so a late or replayed update
    never drops the collection in use."""
    dataset, collections = await collections_of(deps, event.aggregate_id)
    if dataset.deleted:
        return  # dataset_deleted removes everything
    settings = dataset.settings
    try:
        current = vector_collection(dataset.id, *deps.embedding_models.key(
            settings.get("embedding_model_provider"), settings.get("embedding_model")))
    except UnknownEmbeddingModel:
        current = None  # a model this deployment lacks has no collection worth keeping
    *vectors, _keywords = collections
    for store, collection in vectors:
        if collection != current:
            await store.delete(collection)


async def segment_deleted(deps: IndexingDeps, event: Envelope[ev.SegmentDeleted]) -> None:
    uow = UnitOfWork(deps.store, caused_by(event))
    segment = await asyncio.to_thread(uow.get, Segment, event.aggregate_id)
    # every unit it ever had: an edit's re-index may not have run yet
    ids = sorted(segment.child_ids_seen | {str(event.aggregate_id)})
    for store, collection in (await collections_of(deps, event.payload.dataset_id))[1]:
        await store.delete_by_ids(collection, ids)
