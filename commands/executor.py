"""Runs commands: decide with fresh aggregates, then store events + outcome atomically.

Redelivered commands find their outcome already stored and change nothing; a concurrent
writer to the same aggregate makes us load again and decide again. `execute_group` commits a
partition's fetched commands together; on any conflict they are run one by one instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from uuid import UUID

from pydantic import ValidationError

from commands.aggregate import Context
from commands.registry import CommandHandlers
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from events.store import CommandAlreadyRecorded, CommandOutcome, ConcurrencyConflict, EventStore
from schemas.base import CommandEnvelope, EventPayload
from schemas.errors import BadRequest, EddyError

log = logging.getLogger(__name__)
MAX_DECISION_ATTEMPTS = 5


def execute(store: EventStore, handlers: CommandHandlers,
            command: CommandEnvelope) -> CommandOutcome:
    """Decide and record. No look-up first: a redelivered command decides again, and the
    store keeps its first outcome (the outcome's key refuses a second, events included)."""
    ctx = _context(command)
    for attempt in range(1, MAX_DECISION_ATTEMPTS + 1):
        uow = UnitOfWork(store, ctx)
        try:
            result = _decide(handlers, command, uow)
        except EddyError as error:
            outcome = _outcome(command, "rejected", error=error.to_dict())
            store.record_without_events(outcome)
            return store.outcome(command.command_id) or outcome
        events = uow.new_events()
        outcome = _accepted(command, result, events)
        if not events:
            store.record_without_events(outcome)
            return store.outcome(command.command_id) or outcome
        try:
            return replace(outcome, position=store.append(events, outcome))
        except ConcurrencyConflict:
            log.info("concurrent write, deciding again",
                     extra={"command_id": str(command.command_id), "attempt": attempt})
            continue
        except CommandAlreadyRecorded:
            stored = store.outcome(command.command_id)
            assert stored is not None
            return stored
    raise RuntimeError(f"command {command.command_id} kept conflicting")


class _GroupView:
    """The store as a group of commands sees it while deciding: what is stored (read once
    per aggregate) plus the events earlier commands of the group decided."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._histories: dict[UUID, list[Envelope[EventPayload]]] = {}

    def load(self, aggregate_id: UUID) -> list[Envelope[EventPayload]]:
        if aggregate_id not in self._histories:
            self._histories[aggregate_id] = self.store.load(aggregate_id)
        return list(self._histories[aggregate_id])

    def add(self, events: Sequence[Envelope[EventPayload]]) -> None:
        for event in events:
            self.load(event.aggregate_id)
            self._histories[event.aggregate_id].append(event)


def execute_group(store: EventStore, handlers: CommandHandlers,
                  commands: Sequence[CommandEnvelope]) -> list[CommandOutcome]:
    """Group commit: decide the commands in order, each seeing the ones before it, then
    store all their events and outcomes in one transaction (one lock, one flush). Raises
    what the store raises on any conflict; the caller then runs them one by one."""
    view = _GroupView(store)
    entries: list[tuple[list[Envelope[EventPayload]], CommandOutcome]] = []
    firsts: dict[UUID, int] = {}  # a command delivered twice in the group counts once
    for command in commands:
        if command.command_id in firsts:
            continue
        firsts[command.command_id] = len(entries)
        uow = UnitOfWork(store, _context(command), load=view.load)
        try:
            result = _decide(handlers, command, uow)
        except EddyError as error:
            entries.append(([], _outcome(command, "rejected", error=error.to_dict())))
            continue
        events = uow.new_events()
        entries.append((events, _accepted(command, result, events)))
        view.add(events)
    positions = store.append_batch(entries)
    stored = [replace(outcome, position=position)
              for (_, outcome), position in zip(entries, positions, strict=True)]
    return [stored[firsts[c.command_id]] for c in commands]


def _context(command: CommandEnvelope) -> Context:
    return Context(tenant_id=command.tenant_id, actor_id=command.actor_id,
                   correlation_id=command.correlation_id, causation_id=command.command_id)


def _accepted(command: CommandEnvelope, result: dict[str, object],
              events: Sequence[Envelope[EventPayload]]) -> CommandOutcome:
    version = max((e.aggregate_version for e in events
                   if e.aggregate_id == command.aggregate_id), default=None)
    return _outcome(command, "accepted", result=result, version=version,
                    aggregates={e.aggregate_id: (e.aggregate_type, e.aggregate_version)
                                for e in events})


def _decide(handlers: CommandHandlers, command: CommandEnvelope,
            uow: UnitOfWork) -> dict[str, object]:
    entry = handlers.get(command.type)
    if entry is None:
        raise BadRequest(f"Unknown command type {command.type!r}.")
    payload_type, handler = entry
    try:
        payload = payload_type.model_validate(command.payload)
    except ValidationError as exc:
        raise BadRequest(str(exc)) from None
    return handler(payload, uow)


def _outcome(command: CommandEnvelope, status: str, *, result: dict[str, object] | None = None,
             error: dict[str, object] | None = None, version: int | None = None,
             aggregates: dict[UUID, tuple[str, int]] | None = None) -> CommandOutcome:
    return CommandOutcome(
        command_id=command.command_id,
        status=status,
        aggregate_id=command.aggregate_id,
        aggregate_version=version,
        position=None,
        result=result or {},
        error=error,
        aggregates=aggregates or {},
        tenant_id=command.tenant_id,
    )
