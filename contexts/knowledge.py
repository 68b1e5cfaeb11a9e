"""The knowledge context: datasets, documents and their indexing, segments and child chunks,
metadata, tags; retrieval. Its work topics replace Dify's `dataset` / `priority_dataset`
queues and deletion tasks."""

from __future__ import annotations

from commands.knowledge import aggregates, handlers, meta_handlers, tags
from contexts.manifest import ContextManifest, payloads_in
from events.routing import Route
from gateway.knowledge import (
    child_chunks,
    datasets,
    documents,
    files,
    metadata,
    pipelines,
    processing,
    retrieval,
    segments,
)
from gateway.knowledge import tags as tag_routes
from projections.knowledge import meta_projectors, projectors
from projections.tables import PROJECTION_NAME
from schemas.base import EventPayload
from schemas.knowledge import events
from schemas.knowledge.naming import INDEXING_BULK_TOPIC, INDEXING_PRIORITY_TOPIC
from workers.declarations import Job, WorkTopic
from workers.knowledge import monitor
from workers.knowledge.processors import cleanup_processor, indexing_processor

INDEXING_REQUESTS: list[type[EventPayload]] = [events.DocumentIndexingRequested,
                                               events.DocumentIndexingResumed]


def _priority_lane(p: EventPayload) -> bool:
    assert isinstance(p, events.DocumentIndexingRequested | events.DocumentIndexingResumed)
    return p.lane == "priority"


def _bulk_lane(p: EventPayload) -> bool:
    return not _priority_lane(p)


def _added_by_hand(p: EventPayload) -> bool:
    # Segments created by splitting are indexed by their document's job (created by
    # nobody); hand-made ones are small interactive jobs.
    assert isinstance(p, events.SegmentCreated)
    return p.created_by is not None


INDEXING_PRIORITY = WorkTopic(
    # small and interactive jobs: never behind a bulk backlog
    INDEXING_PRIORITY_TOPIC, role="indexing-priority", processor=indexing_processor, routes=[
        Route(INDEXING_REQUESTS, when=_priority_lane),
        Route([events.SegmentCreated], when=_added_by_hand),
        Route([events.SegmentUpdated]),
    ])
INDEXING_BULK = WorkTopic(INDEXING_BULK_TOPIC, role="indexing-bulk", processor=indexing_processor,
                          routes=[Route(INDEXING_REQUESTS, when=_bulk_lane)])
CLEANUP = WorkTopic("cleanup", role="cleanup", processor=cleanup_processor, routes=[
    # DatasetUpdated: a switch of embedding model leaves the old model's collection to drop
    Route([events.DocumentDeleted, events.DatasetDeleted, events.SegmentDeleted,
           events.DatasetUpdated]),
])

KNOWLEDGE = ContextManifest(
    name="knowledge",
    aggregates=[aggregates.Dataset, aggregates.DatasetName, aggregates.Document,
                aggregates.Segment, aggregates.RetrievalHits, tags.Tag, tags.TagName],
    events=payloads_in(events),
    upcasters=events.UPCASTERS,
    handlers=[handlers.HANDLERS, meta_handlers.HANDLERS, tags.HANDLERS],
    projectors={PROJECTION_NAME: [projectors.PROJECTORS, meta_projectors.PROJECTORS]},
    # tags first: /v1/datasets/tags is not a dataset id (nor /v1/datasets/pipeline/…)
    routers=[tag_routes.router, metadata.router, child_chunks.router, pipelines.router,
             files.router, datasets.router, documents.router, processing.router,
             segments.router, retrieval.router, processing.console_router,
             files.preview_router],
    work=[INDEXING_PRIORITY, INDEXING_BULK, CLEANUP],
    jobs=[Job(monitor.JOB_NAME, schedule=monitor.queue_monitor_schedule,
              run=monitor.monitor_datasets_queue)],
)
