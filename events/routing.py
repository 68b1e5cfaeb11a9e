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
        # event type name -> (work topic, route)
        self._routes: dict[str, list[tuple[str, Route]]] = {}
        for topic, feeding in routes.items():
            for route in feeding:
                for event in route.events:
                    self._routes.setdefault(event.event_type, []).append((topic, route))

    def topics_for(self, event: Envelope[EventPayload]) -> list[str]:
        return self.topics_of(event.aggregate_type, event.type, lambda: event.payload)

    def topics_of(self, aggregate_type: str, event_type: str,
                  payload: Callable[[], EventPayload]) -> list[str]:
        """`payload` is called only when a route's condition needs it (once at most): the
        relay decodes no other event."""
        context_topic = self.topic_of_aggregate.get(aggregate_type)
        if context_topic is None:
            raise UnknownAggregateType(aggregate_type)
        topics, decoded = [context_topic], None
        for topic, route in self._routes.get(event_type, ()):
            if route.when is not always:
                if decoded is None:
                    decoded = payload()
                if not route.when(decoded):
                    continue
            topics.append(topic)
        return topics
