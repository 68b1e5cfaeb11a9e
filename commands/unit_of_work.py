"""Loads aggregates for one command (or one worker step) and collects the events they record."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from commands.aggregate import Aggregate, Context
from events.envelope import Envelope
from events.store import EventStore
from schemas.base import EventPayload

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    def __init__(self, store: EventStore, ctx: Context,
                 load: Callable[[UUID], list[Envelope[EventPayload]]] | None = None) -> None:
        self.store = store
        self.ctx = ctx
        # Where aggregates' histories come from: the store, or a group commit's view of it
        # plus what earlier commands of the group decided.
        self._load = load or store.load
        self._loaded: dict[UUID, Aggregate] = {}

    def get(self, cls: type[A], aggregate_id: UUID) -> A:
        """The aggregate as stored; one that does not exist yet when the id is new, or when
        it names another kind of aggregate (ids come from requests: another aggregate's id
        must read as "not found", never be replayed as this kind)."""
        if aggregate_id not in self._loaded:
            events = self._load(aggregate_id)
            if events and events[0].aggregate_type != cls.type_name:
                return cls.foreign(aggregate_id)
            self._loaded[aggregate_id] = cls.replay(aggregate_id, events)
        aggregate = self._loaded[aggregate_id]
        if not isinstance(aggregate, cls):
            return cls.foreign(aggregate_id)  # loaded as another kind by this unit of work
        return aggregate

    def new(self, cls: type[A], aggregate_id: UUID) -> A:
        """An aggregate this unit of work creates under a fresh (derived) id, without
        loading it: the store refuses the commit if the id is taken after all."""
        aggregate = cls(aggregate_id)
        self._loaded[aggregate_id] = aggregate
        return aggregate

    def new_events(self) -> list[Envelope[EventPayload]]:
        return [e for a in self._loaded.values() for e in a.pending]

    def commit(self) -> int | None:
        """Append what the loaded aggregates recorded, atomically; the last position."""
        events = self.new_events()
        if not events:
            return None
        position = self.store.append(events)
        for aggregate in self._loaded.values():
            aggregate.pending.clear()
        return position
