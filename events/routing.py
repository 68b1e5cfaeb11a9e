"""Where the relay publishes each event: its context's topic, and the work topics of the
processors that do the work it asks for (what Dify's Celery queues were). Built from the
contexts' manifests, where each work topic declares its routes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from events.envelope import Envelope
from schemas.base import EventPayload


def always(payload: EventPayload) -> bool:
    return True


@dataclass(frozen=True)
class Route:
    """Events of these types whose payload passes `when` (also) go to the work topic that
    declares the route."""

    events: Sequence[type[EventPayload]]
    when: Callable[[EventPayload], bool] = always


class UnknownAggregateType(Exception):
    """An event of an aggregate type no context declares: a missing manifest entry."""


class Routing:
    def __init__(self, topic_of_aggregate: Mapping[str, str],
                 routes: Mapping[str, Sequence[Route]]) -> None:
        """`routes`: work topic -> the routes that feed it."""
        self.topic_of_aggregate = dict(topic_of_aggregate)
        self._routes: dict[type[EventPayload], list[tuple[str, Route]]] = {}
        for topic, feeding in routes.items():
            for route in feeding:
                for event in route.events:
                    self._routes.setdefault(event, []).append((topic, route))

    def topics_for(self, event: Envelope[EventPayload]) -> list[str]:
        context_topic = self.topic_of_aggregate.get(event.aggregate_type)
        if context_topic is None:
            raise UnknownAggregateType(event.aggregate_type)
        return [context_topic, *(topic for topic, r in self._routes.get(type(event.payload), ())
                                 if r.when(event.payload))]
