"""Loads aggregates for one command and collects the events they record."""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from commands.aggregates import Aggregate, Context
from events.envelope import Envelope
from events.store import EventStore

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    def __init__(self, store: EventStore, ctx: Context) -> None:
        self.store = store
        self.ctx = ctx
        self._loaded: dict[UUID, Aggregate] = {}

    def get(self, cls: type[A], aggregate_id: UUID) -> A:
        if aggregate_id not in self._loaded:
            self._loaded[aggregate_id] = cls.replay(aggregate_id, self.store.load(aggregate_id))
        aggregate = self._loaded[aggregate_id]
        if not isinstance(aggregate, cls):
            raise TypeError(f"{aggregate_id} is a {type(aggregate).__name__}, not {cls.__name__}")
        return aggregate

    def new_events(self) -> list[Envelope]:
        return [e for a in self._loaded.values() for e in a.pending]
