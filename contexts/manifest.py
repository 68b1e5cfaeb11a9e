"""What a bounded context contributes to Eddy, declared once per context (`contexts/<name>.py`).

`assemble` merges the manifests into the registries the layers use: event types with their
upcasters, command handlers, projections, routing to topics, the topic catalogue, worker
roles and HTTP routers. Each registry is keyed by type and refuses duplicates; the
completeness tests (tests/unit/test_registries.py) check nothing is missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType

from fastapi import APIRouter

from adapters.bus.base import TopicSpec
from commands.aggregate import Aggregate
from commands.registry import CommandHandlers, HandlerMap
from events.registry import EventTypes
from events.routing import Routing, WorkRoute
from projections.registry import Projection, Projectors
from schemas.base import EventPayload, Upcaster
from schemas.topics import COMMANDS, dead_letter_topic, event_topic
from workers.container import ProcessorFactory


@dataclass(frozen=True)
class ContextManifest:
    name: str  # its events are published on `events.<name>`
    aggregates: Sequence[type[Aggregate]]
    events: Sequence[type[EventPayload]]
    upcasters: Mapping[tuple[type[EventPayload], int], Upcaster]
    handlers: Sequence[HandlerMap]
    # projection name -> this context's projectors for it
    projectors: Mapping[str, Sequence[Projectors]]
    routers: Sequence[APIRouter] = ()
    # events that also go to a work topic, and the processors (worker roles) consuming them
    work_topics: Sequence[str] = ()
    routes: Sequence[WorkRoute] = ()
    processors: Mapping[str, ProcessorFactory] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return event_topic(self.name)


def payloads_in(module: ModuleType) -> list[type[EventPayload]]:
    """The event payload classes a schema module defines."""
    return [cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, EventPayload) and cls.__module__ == module.__name__]


@dataclass(frozen=True)
class Assembly:
    """The registries built from all contexts' manifests."""

    contexts: Sequence[ContextManifest]
    event_types: EventTypes
    handlers: CommandHandlers
    projections: Mapping[str, Projection]
    routing: Routing
    processors: Mapping[str, ProcessorFactory]

    def topics(self, command_partitions: int, event_partitions: int,
               per_topic: Mapping[str, int] | None = None) -> list[TopicSpec]:
        """Every topic with its partition count (`per_topic` overrides the two defaults),
        each with its dead-letter topic."""
        chosen = dict(per_topic or {})
        specs = [TopicSpec(COMMANDS, chosen.get(COMMANDS, command_partitions))]
        specs += [TopicSpec(t, chosen.get(t, event_partitions)) for c in self.contexts
                  for t in (c.topic, *c.work_topics)]
        return specs + [TopicSpec(dead_letter_topic(s.name), 1) for s in specs]


def assemble(contexts: Sequence[ContextManifest]) -> Assembly:
    names = [c.name for c in contexts]
    if len(set(names)) != len(names):
        raise ValueError(f"context names repeat: {names}")
    topic_of_aggregate: dict[str, str] = {}
    for context in contexts:
        for aggregate in context.aggregates:
            if aggregate.type_name in topic_of_aggregate:
                raise ValueError(f"aggregate {aggregate.type_name} is in two contexts")
            topic_of_aggregate[aggregate.type_name] = context.topic
    processors: dict[str, ProcessorFactory] = {}
    for context in contexts:
        if processors.keys() & context.processors.keys():
            raise ValueError(f"{context.name}: worker role declared twice")
        processors.update(context.processors)
    projection_names = {n for c in contexts for n in c.projectors}
    projections = {
        name: Projection.merge(
            name,
            topics=[c.topic for c in contexts if name in c.projectors],
            aggregate_types=[a.type_name for c in contexts if name in c.projectors
                             for a in c.aggregates],
            parts=[p for c in contexts for p in c.projectors.get(name, ())],
        ) for name in sorted(projection_names)
    }
    return Assembly(
        contexts=tuple(contexts),
        event_types=EventTypes([e for c in contexts for e in c.events],
                               {k: v for c in contexts for k, v in c.upcasters.items()}),
        handlers=CommandHandlers([h for c in contexts for h in c.handlers]),
        projections=projections,
        routing=Routing(topic_of_aggregate, [r for c in contexts for r in c.routes]),
        processors=processors,
    )
