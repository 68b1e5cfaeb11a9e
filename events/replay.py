"""Re-delivering stored events (`eddy events replay`).

A selection of the event store (the filters of `eddy events list`) is published again, each
event to the topics the relay would route it to: all of them (`republish`: every consumer
group on those topics sees it), or only those one group reads, marked so that the other
groups there acknowledge it untouched. Every replayed message carries a replay marker in its
headers, and its envelope the replay's id (`Envelope.replay_id`, for handlers that act
differently on a replay, as indexing does). A processor declared with side effects (mail,
webhooks, LLM calls) acknowledges a replayed message without handling it unless the replay
allowed side effects.

Replays are safe to repeat: projections skip what their per-aggregate tracking has applied,
and the processors' effects are idempotent (keyed by event, segment or attempt ids).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import uuid4

import psycopg

from adapters.bus.base import Bus, OutgoingMessage
from events.envelope import Envelope
from events.listing import EventFilter, StoredEventRow, count_events, max_position, walk
from events.postgres_store import decode_stored
from events.registry import EventTypes
from events.relay import message_headers
from events.routing import Routing
from schemas.base import EventPayload

# Headers of a replayed message.
REPLAY_ID = "replay_id"
REPLAY_GROUP = "replay_group"  # set: only this consumer group handles it
REPLAY_SIDE_EFFECTS = "replay_side_effects"  # "allowed": side-effecting processors handle it


@dataclass(frozen=True)
class ReceivingGroup:
    """A consumer group as a replay sees it (declared by the workers' processors)."""

    name: str
    topics: Sequence[str]
    side_effects: bool = False


def skip_reason(headers: Mapping[str, str], group: str, side_effects: bool) -> str | None:
    """Why this group must acknowledge the message without handling it, or None to handle
    it: a replay meant for another group, or a replay a side-effecting group must not act on."""
    if REPLAY_ID not in headers:
        return None
    target = headers.get(REPLAY_GROUP)
    if target is not None and target != group:
        return "replayed for another group"
    if side_effects and headers.get(REPLAY_SIDE_EFFECTS) != "allowed":
        return "replayed, side effects not allowed"
    return None


class ReplayError(ValueError):
    """A replay request that cannot be carried out (e.g. an unknown group)."""


@dataclass
class ReplayPlan:
    """What a replay sends: per event type, and per group that will act on it."""

    events: int = 0
    messages: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_group: Counter[str] = field(default_factory=Counter)
    # groups that receive events but skip them (side effects not allowed)
    skipped_by_group: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "messages": self.messages,
                "by_type": dict(sorted(self.by_type.items())),
                "by_group": dict(sorted(self.by_group.items())),
                "skipped_by_group": dict(sorted(self.skipped_by_group.items()))}


@dataclass(frozen=True)
class Replay:
    """One replay request: what to select and to whom it goes."""

    selection: EventFilter
    groups: Sequence[ReceivingGroup]  # every group the workers declare
    group: str | None = None  # None: republish to all groups of the topics
    allow_side_effects: bool = False
    replay_id: str = field(default_factory=lambda: uuid4().hex)

    def __post_init__(self) -> None:
        if self.group is not None and self.group not in {g.name for g in self.groups}:
            names = ", ".join(sorted(g.name for g in self.groups))
            raise ReplayError(f"unknown consumer group {self.group!r}; groups: {names}")

    def headers(self) -> dict[str, str]:
        out = {REPLAY_ID: self.replay_id}
        if self.group is not None:
            out[REPLAY_GROUP] = self.group
        if self.allow_side_effects:
            out[REPLAY_SIDE_EFFECTS] = "allowed"
        return out

    def topics(self, routing: Routing, event: Envelope[EventPayload]) -> list[str]:
        """Where this event goes: its routed topics, or those of them the group reads."""
        routed = routing.topics_for(event)
        if self.group is None:
            return routed
        reads = next(g.topics for g in self.groups if g.name == self.group)
        return [t for t in routed if t in reads]

    def receivers(self, topics: Sequence[str]) -> Iterator[tuple[ReceivingGroup, bool]]:
        """The groups meant to receive messages on these topics, each with whether it acts
        on them (as `skip_reason` decides on the consumer's side)."""
        for g in self.groups:
            if set(g.topics) & set(topics) and self.group in (None, g.name):
                yield g, not g.side_effects or self.allow_side_effects

    def count(self, out: ReplayPlan, event: Envelope[EventPayload],
              topics: Sequence[str]) -> None:
        if not topics:
            return  # none of the group's topics: not sent
        out.events += 1
        out.messages += len(topics)
        out.by_type[event.type] += 1
        for group, acts in self.receivers(topics):
            (out.by_group if acts else out.skipped_by_group)[group.name] += 1


class ReplaySource:
    """The selected events, decoded, in position order (up to the log's end at the start)."""

    def __init__(self, conn: psycopg.Connection[Any], selection: EventFilter,
                 types: EventTypes) -> None:
        self.conn = conn
        self.selection = selection
        self.types = types
        self.upto = max_position(conn)
        if selection.to_position is not None:
            self.upto = min(self.upto, selection.to_position)
        self.total = count_events(conn, selection, self.upto)

    def batches(self, batch: int = 500) -> Iterator[list[Envelope[EventPayload]]]:
        after = (self.selection.from_position or 1) - 1
        for rows in walk(self.conn, self.selection, after, self.upto, batch):
            yield [self._decode(r) for r in rows]

    def _decode(self, row: StoredEventRow) -> Envelope[EventPayload]:
        return decode_stored(self.types, row.aggregate_id, row.aggregate_version,
                             f"{row.aggregate_type}:{row.type}", row.raw_state, row.position)


def plan(replay: Replay, source: ReplaySource, routing: Routing) -> ReplayPlan:
    """Counts per type and per receiving group, sending nothing (`--dry-run`)."""
    out = ReplayPlan()
    for events in source.batches():
        for event in events:
            replay.count(out, event, replay.topics(routing, event))
    return out


async def run(replay: Replay, source: ReplaySource, routing: Routing, bus: Bus,
              progress: Callable[[int], None] = lambda n: None) -> ReplayPlan:
    """Publish the selection (per key in position order); `progress(n)` after each batch."""
    out = ReplayPlan()
    extra = replay.headers()
    for events in source.batches():
        outgoing = []
        for event in events:
            topics = replay.topics(routing, event)
            replay.count(out, event, topics)
            headers = {**message_headers(event), **extra}
            value = replace(event, replay_id=replay.replay_id).to_json()
            outgoing += [OutgoingMessage(t, str(event.aggregate_id), value, headers)
                         for t in topics]
        await bus.publish_many(outgoing)
        progress(len(events))
    return out
