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
}


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
    specs += [TopicSpec(t, event_partitions) for t in event_topics()]
    specs += [TopicSpec(dead_letter_topic(s.name), 1) for s in list(specs)]
    return specs
