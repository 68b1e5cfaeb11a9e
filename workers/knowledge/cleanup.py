"""The cleanup processor (Dify's deletion tasks): deleted documents, datasets and segments take
their vectors and stored files with them. Every step is idempotent (deleting what is gone
is a no-op), so a redelivery changes nothing."""

from __future__ import annotations

import asyncio

from commands.knowledge.aggregates import Segment
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from schemas.knowledge import events as ev
from schemas.knowledge.naming import collection_for
from workers.knowledge.indexing import (
    IndexingDeps,
    caused_by,
    remove_dataset_data,
    remove_document_data,
)


async def document_deleted(deps: IndexingDeps, event: Envelope[ev.DocumentDeleted]) -> None:
    await remove_document_data(deps, event.payload.dataset_id, event.aggregate_id)


async def dataset_deleted(deps: IndexingDeps, event: Envelope[ev.DatasetDeleted]) -> None:
    await remove_dataset_data(deps, event.aggregate_id)


async def segment_deleted(deps: IndexingDeps, event: Envelope[ev.SegmentDeleted]) -> None:
    uow = UnitOfWork(deps.store, caused_by(event))
    segment = await asyncio.to_thread(uow.get, Segment, event.aggregate_id)
    # every unit it ever had: an edit's re-index may not have run yet
    ids = sorted(segment.child_ids_seen | {str(event.aggregate_id)})
    for economy, store in ((False, deps.vectors), (True, deps.keywords)):
        await store.delete_by_ids(collection_for(event.payload.dataset_id, economy), ids)
