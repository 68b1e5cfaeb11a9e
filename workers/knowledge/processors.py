"""The knowledge context's stream processors: the two indexing lanes and cleanup.

The lanes are separate consumer groups, so a bulk backlog never delays a priority job and
each lane scales on its own.
"""

from __future__ import annotations

from functools import partial

from adapters.bus.base import Message
from schemas.knowledge import events as ev
from schemas.knowledge.topics import CLEANUP, INDEXING_BULK, INDEXING_PRIORITY
from workers.container import ProcessorFactory, WorkerContainer
from workers.knowledge import cleanup
from workers.knowledge.indexing import (
    IndexingDeps,
    fail_document,
    index_segment,
    run_indexing_job,
)
from workers.runtime import Processor, by_type, decoding


def _deps(c: WorkerContainer) -> IndexingDeps:
    return IndexingDeps(store=c.store, storage=c.storage, embedding_models=c.embedding_models,
                        vectors=c.vectors, keywords=c.keywords)


def indexing_processor(lane_topic: str) -> ProcessorFactory:
    def build(c: WorkerContainer) -> Processor:
        deps = _deps(c)

        async def on_dead_letter(message: Message, exc: BaseException) -> None:
            await fail_document(deps, c.event_types.envelope_from_json(message.value), exc)

        return Processor(group=lane_topic, topics=[lane_topic], on_dead_letter=on_dead_letter,
                         handle=decoding(c.event_types, by_type({
                             ev.DocumentIndexingRequested: partial(run_indexing_job, deps),
                             ev.DocumentIndexingResumed: partial(run_indexing_job, deps),
                             ev.SegmentCreated: partial(index_segment, deps),
                             ev.SegmentUpdated: partial(index_segment, deps),
                         })))

    return build


def cleanup_processor(c: WorkerContainer) -> Processor:
    deps = _deps(c)
    return Processor(group=CLEANUP, topics=[CLEANUP], handle=decoding(c.event_types, by_type({
        ev.DocumentDeleted: partial(cleanup.document_deleted, deps),
        ev.DatasetDeleted: partial(cleanup.dataset_deleted, deps),
        ev.DatasetUpdated: partial(cleanup.dataset_updated, deps),
        ev.SegmentDeleted: partial(cleanup.segment_deleted, deps),
    })))


# role name -> processor factory (`eddy worker --roles …`)
PROCESSORS: dict[str, ProcessorFactory] = {
    "indexing-priority": indexing_processor(INDEXING_PRIORITY),
    "indexing-bulk": indexing_processor(INDEXING_BULK),
    "cleanup": cleanup_processor,
}
