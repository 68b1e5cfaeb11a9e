"""Aggregates: consistency boundaries rebuilt from their events, deciding new ones.

Each aggregate applies its own events (`apply_<EventType>`, taking the payload model) and
records new ones through `record`, which applies them at once so later decisions in the same
command see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Self
from uuid import UUID

from events.envelope import Envelope
from schemas.base import EventPayload
from schemas.errors import BadRequest, EddyError


@dataclass(frozen=True)
class Context:
    """Who caused the events being recorded."""

    tenant_id: UUID | None
    actor_id: UUID | None
    correlation_id: UUID
    causation_id: UUID


class Aggregate:
    type_name: ClassVar[str]  # the class name: stored with every event of the aggregate
    abstract: ClassVar[bool] = False  # a base for aggregates, not a kind of its own

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__
        cls.abstract = cls.__dict__.get("abstract", False)

    def __init__(self, aggregate_id: UUID) -> None:
        self.id = aggregate_id
        self.version = 0
        self.tenant_id: UUID | None = None
        self.pending: list[Envelope[EventPayload]] = []
        self.is_foreign = False

    @property
    def exists(self) -> bool:
        return self.version > 0

    @classmethod
    def foreign(cls, aggregate_id: UUID) -> Self:
        """Stands for an id that another kind of aggregate holds: it does not exist as this
        kind (every visibility check says "not found"), and nothing can be recorded on it."""
        aggregate = cls(aggregate_id)
        aggregate.is_foreign = True
        return aggregate

    @classmethod
    def replay(cls, aggregate_id: UUID, events: Sequence[Envelope[EventPayload]]) -> Self:
        aggregate = cls(aggregate_id)
        for event in events:
            aggregate._apply(event)
        return aggregate

    def _apply(self, event: Envelope[EventPayload]) -> None:
        self.version = event.aggregate_version
        self.tenant_id = event.tenant_id
        getattr(self, f"apply_{event.type}")(event.payload)

    def record(self, payload: EventPayload, ctx: Context, tenant_id: UUID | None = None) -> None:
        if self.is_foreign:
            raise BadRequest(f"{self.id} is not a {self.type_name}; that id is taken.")
        event = Envelope.new(
            payload,
            aggregate_type=self.type_name,
            aggregate_id=self.id,
            aggregate_version=self.version + 1,
            tenant_id=tenant_id or self.tenant_id or ctx.tenant_id,
            correlation_id=ctx.correlation_id,
            causation_id=ctx.causation_id,
        )
        self._apply(event)
        self.pending.append(event)


class NameClaim(Aggregate):
    """A name unique in its scope (a workspace's tag or dataset names), held by at most one
    aggregate. Its id is derived from (scope, name), so two concurrent claims of one name
    both append version 1 of the same claim: the store lets one through, the other command
    decides again and is refused. Subclasses name their events and their "taken" error."""

    abstract: ClassVar[bool] = True  # not an aggregate type of its own
    duplicate: ClassVar[type[EddyError]]
    holder: UUID | None = None

    def claimed(self, holder: UUID) -> EventPayload:
        raise NotImplementedError

    def released(self, holder: UUID) -> EventPayload:
        raise NotImplementedError

    def claim(self, holder: UUID, ctx: Context) -> None:
        if self.holder == holder:
            return
        if self.holder is not None:
            raise self.duplicate()
        self.record(self.claimed(holder), ctx)

    def release(self, holder: UUID, ctx: Context) -> None:
        if self.holder == holder:
            self.record(self.released(holder), ctx)
