"""What a bounded context contributes to Eddy, declared once per context (`contexts/<name>.py`).

`assemble` merges the manifests into the registries the layers use: event types with their
upcasters, command handlers, projections, routing to topics, the topic catalogue, worker
roles, scheduled jobs and HTTP routers. It refuses manifests that contradict each other (a
name declared twice, a route for an event no context declares, a dependency the worker
container does not provide) with a message naming the culprit; the completeness tests
(tests/unit/test_registries.py) check nothing is missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

from fastapi import APIRouter

from adapters.bus.base import TopicSpec
from commands.aggregate import Aggregate
from commands.registry import CommandHandlers, HandlerMap
from events.registry import EventTypes
from events.routing import Routing
from projections.read_models import READ_MODELS
from projections.registry import Projection, Projectors
from schemas.base import EventPayload, Upcaster
from schemas.topics import COMMANDS, dead_letter_topic, event_topic
from workers.container import PROVIDED
from workers.declarations import (
    Job,
    WorkTopic,
    dependencies_of,
    positional_parameters,
)
from workers.scheduler import BACKBONE_JOBS


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
    # the work topics its events are routed to, each with the processor consuming it
    work: Sequence[WorkTopic] = ()
    jobs: Sequence[Job] = ()

    @property
    def topic(self) -> str:
        return event_topic(self.name)

    def role(self, work: WorkTopic) -> str:
        return f"{self.name}.{work.role}"


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
    # worker role (`<context>.<role>`) -> the work topic its processor consumes
    work: Mapping[str, WorkTopic]
    jobs: Mapping[str, Job]

    def topics(self, command_partitions: int, event_partitions: int,
               per_topic: Mapping[str, int] | None = None) -> list[TopicSpec]:
        """Every topic with its partition count (`per_topic` overrides the two defaults),
        each with its dead-letter topic."""
        chosen = dict(per_topic or {})
        specs = [TopicSpec(COMMANDS, chosen.get(COMMANDS, command_partitions))]
        specs += [TopicSpec(t, chosen.get(t, event_partitions)) for c in self.contexts
                  for t in (c.topic, *(w.name for w in c.work))]
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
    event_types = EventTypes([e for c in contexts for e in c.events],
                             {k: v for c in contexts for k, v in c.upcasters.items()})
    work = _work_by_role(contexts, set(event_types.by_name.values()))
    projection_names = {n for c in contexts for n in c.projectors}
    unknown = sorted(projection_names - READ_MODELS.keys())
    if unknown:
        raise ValueError(f"projections {unknown} have no read model (its tables' MetaData in "
                         "projections/read_models.py)")
    projections = {
        name: Projection.merge(
            name, READ_MODELS[name],
            topics=[c.topic for c in contexts if name in c.projectors],
            aggregate_types=[a.type_name for c in contexts if name in c.projectors
                             for a in c.aggregates],
            parts=[p for c in contexts for p in c.projectors.get(name, ())],
        ) for name in sorted(projection_names)
    }
    return Assembly(
        contexts=tuple(contexts),
        event_types=event_types,
        handlers=CommandHandlers([h for c in contexts for h in c.handlers]),
        projections=projections,
        routing=Routing(topic_of_aggregate, {w.name: w.routes for w in work.values()}),
        work=work,
        jobs=_jobs_by_name(contexts),
    )


def _work_by_role(contexts: Sequence[ContextManifest],
                  declared_events: set[type[EventPayload]]) -> dict[str, WorkTopic]:
    """The work topics by worker role, each checked: its name is no other topic's, its
    routes carry declared events, its processor asks only for what the container provides."""
    topics = {COMMANDS: "the backbone", **{c.topic: c.name for c in contexts}}
    work: dict[str, WorkTopic] = {}
    for context in contexts:
        for w in context.work:
            role = context.role(w)
            if w.name in topics:
                raise ValueError(f"{context.name}: work topic {w.name!r} is already declared "
                                 f"by {topics[w.name]}")
            topics[w.name] = context.name
            if role in work:
                raise ValueError(f"{context.name}: worker role {role!r} is declared twice")
            if not w.routes or not all(r.events for r in w.routes):
                raise ValueError(f"{role}: work topic {w.name!r} needs routes, each with "
                                 "event types (nothing would reach it)")
            stray = sorted(e.__name__ for r in w.routes for e in r.events
                           if e not in declared_events)
            if stray:
                raise ValueError(f"{role}: work topic {w.name!r} routes {stray}, which no "
                                 "context declares")
            if positional_parameters(w.processor) != ["topic"]:
                raise ValueError(f"{role}: its processor factory takes `topic` (the work "
                                 "topic's name), then its dependencies as keyword-only "
                                 "parameters")
            _check_dependencies(role, w.processor)
            work[role] = w
    return work


def _jobs_by_name(contexts: Sequence[ContextManifest]) -> dict[str, Job]:
    jobs: dict[str, Job] = {}
    for owner, job in [("the backbone", j) for j in BACKBONE_JOBS] + [
            (c.name, j) for c in contexts for j in c.jobs]:
        if job.name in jobs:
            raise ValueError(f"{owner}: job {job.name!r} is declared twice")
        if positional_parameters(job.run):
            raise ValueError(f"{owner}: job {job.name!r} takes only its dependencies, "
                             "as keywords")
        _check_dependencies(f"job {job.name!r}", job.run)
        jobs[job.name] = job
    return jobs


def _check_dependencies(who: str, factory: Callable[..., object]) -> None:
    unknown = sorted(set(dependencies_of(factory)) - PROVIDED)
    if unknown:
        raise ValueError(f"{who} asks for {unknown}, which the worker container does not "
                         f"provide (it provides {sorted(PROVIDED)})")
