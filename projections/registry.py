"""Projectors keyed by the event class their signature names, and projections built from
the contexts' contributions.

A context declares, per projection it feeds, its projectors and the event types it
deliberately ignores (`projectors(project_app_created, ..., ignore=[TagNameClaimed])`). The
composition root merges them into one `Projection` per name; the runner refuses an event
that is neither projected nor ignored, so a forgotten registration fails loudly.

A projector may also have a run form (`projectors(..., runs=[project_segments_created])`,
`(conn, events: Sequence[Envelope[X]])`): consecutive events of its type are applied by one
call, with one statement of each kind for all of them instead of one per event. The single
projector is then that run form applied to one event, so there is one copy of the logic.
A run form may take several types (`Sequence[Envelope[X | Y]]`): consecutive events of any
of them, in their order, make one run (a document's plain status changes: one UPDATE each).

A projector may also gather work over a batch (`batch_state`) for a step run once at the end
of each `Projection.apply` (`projectors` parts' `after_apply`), in the batch's transaction:
sums that concurrent batches add to, written once per row and in key order.

Projectors never see a NUL character: Postgres text and jsonb cannot hold one, and the edge
refuses it (`gateway/nul_guard.py`), but the store may hold events recorded before that or
by other writers. `Projection.apply`, the one way events reach projectors (live, catch-up
and a rebuild's fold alike), hands them a copy with each NUL replaced by U+FFFD, so the
read model shows where one was instead of failing on it for good.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import groupby
from typing import Any, get_args, get_origin, get_type_hints
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from schemas.base import EventPayload

Projector = Callable[[AsyncConnection, Envelope[Any]], Awaitable[None]]
RunProjector = Callable[[AsyncConnection, Sequence[Envelope[Any]]], Awaitable[None]]
# Run once at the end of a rebuild's bulk load, for work projectors skip during it
# (`projections.layout.in_bulk_load`), e.g. counts done once over all rows.
BulkLoadStep = Callable[[AsyncConnection], Awaitable[None]]
# Run once at the end of each `Projection.apply` (a batch, in its transaction): writes its
# projectors gathered over the batch's events (`batch_state`), e.g. sums many transactions
# add to, added once per key and in key order, so concurrent batches never deadlock on them.
AfterApply = Callable[[AsyncConnection], Awaitable[None]]
_BATCH: ContextVar[dict[str, Any] | None] = ContextVar("projection_batch", default=None)


def batch_state() -> dict[str, Any]:
    """What the projectors of the running `Projection.apply` keep for its `after_apply`
    steps (empty at each apply's start)."""
    state = _BATCH.get()
    if state is None:
        raise RuntimeError("batch_state is only there while Projection.apply runs")
    return state

NUL, NUL_SHOWN_AS = "\x00", "\ufffd"


@dataclass(frozen=True)
class Projectors:
    """One context's contribution to one projection."""

    handlers: Mapping[type[EventPayload], Projector]
    ignored: frozenset[type[EventPayload]] = frozenset()
    after_bulk_load: tuple[BulkLoadStep, ...] = ()
    runs: Mapping[type[EventPayload], RunProjector] = field(default_factory=dict)
    after_apply: tuple[AfterApply, ...] = ()


def projectors(*handlers: Projector, ignore: Iterable[type[EventPayload]] = (),
               after_bulk_load: Iterable[BulkLoadStep] = (),
               runs: Iterable[RunProjector] = (),
               after_apply: Iterable[AfterApply] = ()) -> Projectors:
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
    run_registry: dict[type[EventPayload], RunProjector] = {}
    for run in runs:
        for event in _event_classes(run):
            if event not in registry or event in run_registry:
                raise ValueError(f"{run.__name__}: a run form needs one single projector of "
                                 f"{event.event_type} (the run form applied to one event)")
            run_registry[event] = run
    return Projectors(registry, ignored, tuple(after_bulk_load), run_registry,
                      tuple(after_apply))


def _event_class(handler: Callable[..., Any]) -> type[EventPayload]:
    """X from the projector's `(conn, e: Envelope[X])` signature."""
    second = list(inspect.signature(handler).parameters)[1]
    args = get_args(get_type_hints(handler)[second])
    if len(args) != 1 or not _is_payload(args[0]):
        raise TypeError(f"{handler.__name__}: its event parameter must be Envelope[<payload>]")
    return args[0]  # type: ignore[no-any-return]


def _event_classes(run: Callable[..., Any]) -> tuple[type[EventPayload], ...]:
    """X (or X, Y, ...) from a run form's `(conn, events: Sequence[Envelope[X | Y]])`."""
    second = list(inspect.signature(run).parameters)[1]
    hint = get_type_hints(run)[second]
    args = get_args(get_args(hint)[0]) if get_origin(hint) is Sequence else ()
    events = (get_args(args[0]) or args) if len(args) == 1 else ()
    if not events or not all(_is_payload(e) for e in events):
        raise TypeError(f"{run.__name__}: its event parameter must be "
                        "Sequence[Envelope[<payload> | ...]]")
    return events


def _is_payload(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, EventPayload)


@dataclass(frozen=True)
class Projection:
    """A read model: its tables (`metadata`: what a rebuild creates and folds into, and
    the layout it builds, `projections/layout.py`), the topics it follows, the aggregates
    whose events it tracks, and what it does with each event type."""

    name: str
    metadata: MetaData
    topics: Sequence[str]
    aggregate_types: Sequence[str]
    handlers: Mapping[type[EventPayload], Projector] = field(default_factory=dict)
    ignored: frozenset[type[EventPayload]] = frozenset()
    after_bulk_load: tuple[BulkLoadStep, ...] = ()
    runs: Mapping[type[EventPayload], RunProjector] = field(default_factory=dict)
    after_apply: tuple[AfterApply, ...] = ()

    @classmethod
    def merge(cls, name: str, metadata: MetaData, topics: Sequence[str],
              aggregate_types: Sequence[str], parts: Iterable[Projectors]) -> Projection:
        handlers: dict[type[EventPayload], Projector] = {}
        ignored: set[type[EventPayload]] = set()
        after: list[BulkLoadStep] = []
        runs: dict[type[EventPayload], RunProjector] = {}
        after_apply: list[AfterApply] = []
        for part in parts:
            twice = (handlers.keys() | ignored) & (part.handlers.keys() | part.ignored)
            if twice:
                raise ValueError(f"{name}: {sorted(e.event_type for e in twice)} declared by "
                                 "two contexts")
            handlers.update(part.handlers)
            ignored |= part.ignored
            after += part.after_bulk_load
            runs.update(part.runs)
            after_apply += [step for step in part.after_apply if step not in after_apply]
        return cls(name, metadata, tuple(topics), tuple(sorted(aggregate_types)), handlers,
                   frozenset(ignored), tuple(after), runs, tuple(after_apply))

    def _run_of(self, event: Envelope[Any]) -> object:
        """What groups consecutive events into one run: their type's run form (which may
        take several types), or else their type."""
        payload_type = type(event.payload)
        return self.runs.get(payload_type, payload_type)

    def follows(self, event_type: type[EventPayload]) -> bool:
        return event_type in self.handlers or event_type in self.ignored

    async def apply(self, conn: AsyncConnection, events: Sequence[Envelope[Any]]) -> None:
        """Applies events in their order: a run of consecutive events of a type with a run
        form in one call, the others one at a time; ignored types are skipped. Then the
        `after_apply` steps."""
        events = [without_nul(e) for e in events]
        batch = _BATCH.set({})
        try:
            for _, same in groupby(events, key=self._run_of):
                run = list(same)
                run_projector = self.runs.get(type(run[0].payload))
                if run_projector is not None and len(run) > 1:
                    await run_projector(conn, run)
                    continue
                for event in run:
                    projector = self.handlers.get(type(event.payload))
                    if projector is not None:
                        await projector(conn, event)
            for step in self.after_apply:
                await step(conn)
        finally:
            _BATCH.reset(batch)


# Values that hold no text, told apart by their exact type first (most of a payload's
# values): a pydantic model's isinstance check is an ABC check, several times slower.
_WITHOUT_TEXT = frozenset({type(None), bool, int, float, UUID, datetime})


def _holds_nul(value: object) -> bool:
    if type(value) in _WITHOUT_TEXT:
        return False
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, BaseModel):
        return any(_holds_nul(v) for v in value.__dict__.values())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return False


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, NUL_SHOWN_AS)
    if isinstance(value, BaseModel):
        return value.model_copy(update={k: _shown(v) for k, v in value.__dict__.items()})
    if isinstance(value, list | tuple):
        return type(value)(_shown(v) for v in value)
    if isinstance(value, dict):
        return {_shown(k): _shown(v) for k, v in value.items()}
    return value


def without_nul(event: Envelope[Any]) -> Envelope[Any]:
    """The event itself, or when its payload holds a NUL a copy with U+FFFD in its place."""
    if not _holds_nul(event.payload):
        return event
    return replace(event, payload=_shown(event.payload))
