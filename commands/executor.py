"""Runs one command: decide with fresh aggregates, then store events + outcome atomically.

Redelivered commands find their outcome already stored and change nothing; a concurrent
writer to the same aggregate makes us load again and decide again.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from uuid import UUID

from pydantic import ValidationError

from commands.aggregate import Context
from commands.registry import CommandHandlers
from commands.unit_of_work import UnitOfWork
from events.store import CommandAlreadyRecorded, CommandOutcome, ConcurrencyConflict, EventStore
from schemas.base import CommandEnvelope
from schemas.errors import BadRequest, EddyError

log = logging.getLogger(__name__)
MAX_DECISION_ATTEMPTS = 5


def execute(store: EventStore, handlers: CommandHandlers,
            command: CommandEnvelope) -> CommandOutcome:
    """Decide and record. No look-up first: a redelivered command decides again, and the
    store keeps its first outcome (the outcome's key refuses a second, events included)."""
    ctx = Context(
        tenant_id=command.tenant_id,
        actor_id=command.actor_id,
        correlation_id=command.correlation_id,
        causation_id=command.command_id,
    )
    for attempt in range(1, MAX_DECISION_ATTEMPTS + 1):
        uow = UnitOfWork(store, ctx)
        try:
            result = _decide(handlers, command, uow)
        except EddyError as error:
            outcome = _outcome(command, "rejected", error=error.to_dict())
            store.record_without_events(outcome)
            return store.outcome(command.command_id) or outcome
        events = uow.new_events()
        version = max((e.aggregate_version for e in events
                       if e.aggregate_id == command.aggregate_id), default=None)
        outcome = _outcome(command, "accepted", result=result, version=version,
                           aggregates={e.aggregate_id: (e.aggregate_type, e.aggregate_version)
                                       for e in events})
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
    )
