"""Projectors keyed by the event class their signature names, and projections built from
the contexts' contributions.

A context declares, per projection it feeds, its projectors and the event types it
deliberately ignores (`projectors(project_app_created, ..., ignore=[TagNameClaimed])`). The
composition root merges them into one `Projection` per name; the runner refuses an event
that is neither projected nor ignored, so a forgotten registration fails loudly.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args, get_type_hints

from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from schemas.base import EventPayload

Projector = Callable[[AsyncConnection, Envelope[Any]], Awaitable[None]]
# Run once at the end of a rebuild's bulk load, for work projectors skip during it
# (`projections.layout.in_bulk_load`), e.g. counts done once over all rows.
BulkLoadStep = Callable[[AsyncConnection], Awaitable[None]]


@dataclass(frozen=True)
class Projectors:
    """One context's contribution to one projection."""

    handlers: Mapping[type[EventPayload], Projector]
    ignored: frozenset[type[EventPayload]] = frozenset()
    after_bulk_load: tuple[BulkLoadStep, ...] = ()


def projectors(*handlers: Projector, ignore: Iterable[type[EventPayload]] = (),
               after_bulk_load: Iterable[BulkLoadStep] = ()) -> Projectors:
    registry: dict[type[EventPayload], Projector] = {}
    for handler in handlers:
        event = _event_class(handler)
        if event in registry:
            raise ValueError(f"{event.event_type} has two projectors: "
                             f"{registry[event].__name__}, {handler.__name__}")
        registry[event] = handler
    ignored = frozenset(ignore)
    if ignored & registry.keys():
        raise ValueError(f"projected and ignored: {sorted(e.event_type for e in ignored)}")
    return Projectors(registry, ignored, tuple(after_bulk_load))


def _event_class(handler: Projector) -> type[EventPayload]:
    """X from the projector's `(conn, e: Envelope[X])` signature."""
    second = list(inspect.signature(handler).parameters)[1]
    args = get_args(get_type_hints(handler)[second])
    if len(args) != 1 or not issubclass(args[0], EventPayload):
        raise TypeError(f"{handler.__name__}: its event parameter must be Envelope[<payload>]")
    return args[0]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Projection:
    """A read model: the topics it follows, the aggregates whose events it tracks, and
    what it does with each event type."""

    name: str
    topics: Sequence[str]
    aggregate_types: Sequence[str]
    handlers: Mapping[type[EventPayload], Projector] = field(default_factory=dict)
    ignored: frozenset[type[EventPayload]] = frozenset()
    after_bulk_load: tuple[BulkLoadStep, ...] = ()

    @classmethod
    def merge(cls, name: str, topics: Sequence[str], aggregate_types: Sequence[str],
              parts: Iterable[Projectors]) -> Projection:
        handlers: dict[type[EventPayload], Projector] = {}
        ignored: set[type[EventPayload]] = set()
        after: list[BulkLoadStep] = []
        for part in parts:
            twice = (handlers.keys() | ignored) & (part.handlers.keys() | part.ignored)
            if twice:
                raise ValueError(f"{name}: {sorted(e.event_type for e in twice)} declared by "
                                 "two contexts")
            handlers.update(part.handlers)
            ignored |= part.ignored
            after += part.after_bulk_load
        return cls(name, tuple(topics), tuple(sorted(aggregate_types)), handlers,
                   frozenset(ignored), tuple(after))

    def follows(self, event_type: type[EventPayload]) -> bool:
        return event_type in self.handlers or event_type in self.ignored
