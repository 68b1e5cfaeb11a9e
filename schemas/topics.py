"""The topic catalogue: which bounded context each aggregate belongs to, and topic names."""

from __future__ import annotations

from adapters.bus.base import TopicSpec

COMMANDS = "commands"
DEAD_LETTER_SUFFIX = ".dlq"

# aggregate type -> bounded context; one event topic per context
CONTEXT_OF_AGGREGATE: dict[str, str] = {
    "Setup": "workspace",
    "Account": "workspace",
    "Workspace": "workspace",
    "App": "apps",
    "ApiKey": "apps",
    "Dataset": "knowledge",
    "Document": "knowledge",
    "Segment": "knowledge",
    "Tag": "knowledge",
    "TagName": "knowledge",  # a workspace's tag name, claimed by one tag (uniqueness)
}

# Work topics: besides its context topic, the relay also routes some events to the topic of
# the processor that does the work they ask for (what Dify's Celery queues were).
INDEXING_PRIORITY = "indexing.priority"  # small and interactive jobs: never behind a backlog
INDEXING_BULK = "indexing.bulk"
CLEANUP = "cleanup"
WORK_TOPICS = (INDEXING_PRIORITY, INDEXING_BULK, CLEANUP)


def work_topic(event_type: str, payload: dict[str, object]) -> str | None:
    """The work topic an event goes to, if it asks for work."""
    if event_type in ("DocumentIndexingRequested", "DocumentIndexingResumed"):
        return INDEXING_PRIORITY if payload.get("lane") == "priority" else INDEXING_BULK
    if event_type in ("SegmentCreated", "SegmentUpdated"):
        # Segments created by splitting are indexed by their document's job (attempt > 0 and
        # created by nobody); hand-made ones and edits are small interactive jobs.
        return INDEXING_PRIORITY if payload.get("created_by") or event_type == "SegmentUpdated" \
            else None
    if event_type in ("DocumentDeleted", "DatasetDeleted", "SegmentDeleted"):
        return CLEANUP
    return None


def event_topic(context: str) -> str:
    return f"events.{context}"


def topic_for_aggregate(aggregate_type: str) -> str:
    return event_topic(CONTEXT_OF_AGGREGATE[aggregate_type])


def dead_letter_topic(topic: str) -> str:
    return topic + DEAD_LETTER_SUFFIX


def event_topics() -> list[str]:
    return sorted({event_topic(c) for c in CONTEXT_OF_AGGREGATE.values()})


def catalogue(command_partitions: int, event_partitions: int) -> list[TopicSpec]:
    specs = [TopicSpec(COMMANDS, command_partitions)]
    specs += [TopicSpec(t, event_partitions) for t in [*event_topics(), *WORK_TOPICS]]
    specs += [TopicSpec(dead_letter_topic(s.name), 1) for s in list(specs)]
    return specs
