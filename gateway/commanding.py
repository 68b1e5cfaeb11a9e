"""Sending a command from the gateway and waiting for what became of it.

The gateway publishes the command keyed by its aggregate, waits for the outcome (accepted
with a position, or rejected with a typed error), and, for read-your-writes, until the read
model has applied the command's events. Past the timeouts it answers 202 with a status URL.
An Idempotency-Key fixes the command id, so a retried request finds the first outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

import orjson
from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.transient import is_transient
from events.listener import Heard
from events.store import OUTCOME_CHANNEL, CommandOutcome, outcome_from_notice
from gateway.container import GatewayContainer
from gateway.deps import console_projection
from gateway.metrics import COMMAND_OUTCOMES
from observability import correlation_id
from projections.progress import aggregates_projected
from projections.registry import Projection
from projections.runner import PROJECTION_CHANNEL
from projections.tables import idempotency_keys
from schemas.base import EDDY_NAMESPACE, CommandEnvelope, CommandPayload
from schemas.errors import EddyError, IdempotencyKeyReused, error_from_dict
from schemas.topics import COMMANDS

RECHECK_SECONDS = 1.0  # a notification can be lost across a reconnect: look this often


class CommandPending(Exception):
    """The outcome (or its projection) was not ready in time; the client polls status_url."""

    def __init__(self, command_id: UUID) -> None:
        super().__init__(str(command_id))
        self.command_id = command_id


@dataclass(frozen=True)
class Accepted:
    command_id: UUID
    position: int | None
    result: dict[str, object]


class CommandGateway:
    def __init__(self, container: GatewayContainer) -> None:
        self.c = container
        assert container.notifications is not None, "the gateway listens for outcomes"
        self.notifications = container.notifications

    async def send(self, payload: CommandPayload, *, aggregate_id: UUID,
                   tenant_id: UUID | None, actor_id: UUID | None,
                   idempotency_key: str | None = None, creates: bool = False,
                   read_your_writes: bool = True) -> Accepted:
        """Publish and wait for the outcome; with `read_your_writes`, also until the read
        model shows what the command wrote (a caller that reads elsewhere need not wait).
        `creates`: the aggregate id was made for this request (a retry makes another), so
        an Idempotency-Key does not tie the request to it."""
        command_id = uuid4()
        if idempotency_key:
            command_id = await self._claim_idempotency_key(
                idempotency_key, payload, tenant_id, actor_id, aggregate_id, creates)
            previous = await self.outcome(command_id)
            if previous is not None:
                return await self._settle(previous)
        outcomes = Heard(_notice_of(command_id))
        projected = Heard(_versions_of(console_projection(self.c)))
        # Listening before publishing: whatever the command causes is heard, no query needed.
        with self.notifications.hearing(OUTCOME_CHANNEL, outcomes), \
                self.notifications.hearing(PROJECTION_CHANNEL, projected):
            await self.post(payload, aggregate_id=aggregate_id, tenant_id=tenant_id,
                            actor_id=actor_id, command_id=command_id)
            # Published means accepted: from here on, a dependency failing while we wait
            # makes the answer "pending" (202 + status URL), never an error to retry.
            try:
                outcome = await self._outcome_heard(
                    command_id, outcomes, self.c.settings.COMMAND_TIMEOUT_SECONDS)
                if outcome is None:
                    raise CommandPending(command_id)
                COMMAND_OUTCOMES.labels(payload.command_type, outcome.status).inc()
                return await self._settle(outcome, projected if read_your_writes else None,
                                          wait=read_your_writes)
            except Exception as exc:
                if is_transient(exc):
                    raise CommandPending(command_id) from exc
                raise

    async def post(self, payload: CommandPayload, *, aggregate_id: UUID,
                   tenant_id: UUID | None, actor_id: UUID | None,
                   command_id: UUID | None = None) -> UUID:
        """Publish the command and return its id, without waiting for what becomes of it
        (for effects no answer depends on, such as retrieval hit counts)."""
        command = CommandEnvelope.of(
            payload, aggregate_id=aggregate_id, tenant_id=tenant_id, actor_id=actor_id,
            correlation_id=UUID(correlation_id.get() or str(uuid4())), command_id=command_id,
        )
        await self.c.bus.publish(COMMANDS, str(aggregate_id), command.to_json(),
                                 {"command_type": command.type,
                                  "correlation_id": str(command.correlation_id)})
        return command.command_id

    async def _outcome_heard(self, command_id: UUID, heard: Heard,
                             timeout: float) -> CommandOutcome | None:
        """The outcome from its notification; from the table when the notice was too big to
        carry it, or when none came within a second (one may be lost across a reconnect)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if heard.payloads:
                return outcome_from_notice(heard.payloads[0]) or await self.outcome(command_id)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            if not await heard.next(min(remaining, RECHECK_SECONDS)) and (
                    outcome := await self.outcome(command_id)) is not None:
                return outcome

    async def outcome(self, command_id: UUID) -> CommandOutcome | None:
        """The event store's record of it (stored with the command's events)."""
        return await asyncio.to_thread(self.c.store.outcome, command_id)

    async def status(self, command_id: UUID, tenant_id: UUID) -> dict[str, Any]:
        """What a 202's status_url answers to a credential of `tenant_id`: pending until the
        outcome is known and, when accepted, until the read model shows it. Another
        workspace's command is as unknown as one never sent."""
        outcome = await self.outcome(command_id)
        if outcome is None or outcome.tenant_id != tenant_id:
            return {"id": str(command_id), "status": "pending"}
        projected = outcome.position is None or await self.wait_for_projection(
            outcome, timeout=0)
        return {
            "id": str(command_id),
            "status": outcome.status if projected or outcome.status == "rejected"
            else "pending",
            "position": outcome.position,
            "result": outcome.result,
            "error": outcome.error,
        }

    async def wait_outcome(self, command_id: UUID, timeout: float) -> CommandOutcome | None:
        """The outcome of a command published earlier (a status poll, a benchmark)."""
        heard = Heard(_notice_of(command_id))
        with self.notifications.hearing(OUTCOME_CHANNEL, heard):
            return await self.outcome(command_id) or await self._outcome_heard(
                command_id, heard, timeout)
    async def wait_for_projection(self, outcome: CommandOutcome, timeout: float,
                                  heard: Heard | None = None) -> bool:
        """Wait until the read model shows what the command wrote: its own aggregates, each
        at its new version, so a stuck aggregate elsewhere never slows this answer. With
        what was `heard` since before the command, usually without a query: every aggregate
        the projection applies is noticed, so only a lost notice (a reconnect) makes it ask
        the tracking table, on the timer."""
        projection = console_projection(self.c)
        followed = set(projection.aggregate_types)
        wanted = {i: v for i, (kind, v) in outcome.aggregates.items() if kind in followed}
        if not outcome.aggregates and outcome.aggregate_id and outcome.aggregate_version:
            wanted = {outcome.aggregate_id: outcome.aggregate_version}  # older outcomes
        checked = heard is not None  # heard since before the command: nothing to ask yet
        if heard is None:
            heard = Heard(_versions_of(projection))
        with self.notifications.hearing(PROJECTION_CHANNEL, heard):
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                # reads use the active version (it may switch meanwhile: ask each time)
                active = self.c.read_models.active(projection.name).schema
                for payload in heard.payloads:
                    name, aggregate, version = payload.rsplit(":", 2)
                    if name != active:
                        continue
                    if wanted.get(UUID(aggregate), int(version) + 1) <= int(version):
                        del wanted[UUID(aggregate)]
                heard.payloads.clear()
                if not wanted:
                    return True
                remaining = deadline - asyncio.get_running_loop().time()
                if not checked or remaining <= 0 or not await heard.next(
                        min(remaining, RECHECK_SECONDS)):
                    # first look, timer, or the end: ask the tracking table itself
                    checked = True
                    if await aggregates_projected(self.c.engine, active, wanted):
                        return True
                    if remaining <= 0:
                        return False

    async def _settle(self, outcome: CommandOutcome, heard: Heard | None = None,
                      wait: bool = True) -> Accepted:
        if outcome.status == "rejected":
            raise _rejection(outcome)
        if wait and outcome.position is not None and not await self.wait_for_projection(
            outcome, self.c.settings.PROJECTION_WAIT_SECONDS, heard
        ):
            raise CommandPending(outcome.command_id)
        return Accepted(outcome.command_id, outcome.position, outcome.result)

    async def _claim_idempotency_key(self, key: str, payload: CommandPayload,
                                     tenant_id: UUID | None, actor_id: UUID | None,
                                     aggregate_id: UUID, creates: bool) -> UUID:
        scope = f"{tenant_id}:{actor_id}:{payload.command_type}:{key}"
        command_id = uuid5(EDDY_NAMESPACE, "idempotency:" + scope)
        # Values the gateway generated (a new aggregate's id, a token) are not part of the
        # request; the ids it names are (the same key on another app is another request).
        fields = payload.model_dump(mode="json", exclude=_GENERATED_FIELDS)
        if creates:
            fields = {k: v for k, v in fields.items() if v != str(aggregate_id)}
        request_hash = hashlib.sha256(orjson.dumps(
            {"payload": fields, "target": None if creates else str(aggregate_id)},
            option=orjson.OPT_SORT_KEYS)).hexdigest()
        async with self.c.engine.begin() as conn:
            await conn.execute(_insert(conn, idempotency_keys).values(
                scope_key=scope, command_id=command_id, request_hash=request_hash,
                created_at=datetime.now(UTC),
            ).on_conflict_do_nothing())
            stored = (await conn.execute(select(idempotency_keys.c.request_hash)
                      .where(idempotency_keys.c.scope_key == scope))).scalar_one()
        if stored != request_hash:
            raise IdempotencyKeyReused()
        return command_id


def _insert(conn: AsyncConnection, table: Any) -> Insert:
    """An INSERT that can skip conflicting rows, in the database's dialect (Postgres; SQLite
    for a node without Postgres, such as the unit tier)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return dialect.insert(table)  # type: ignore[no-any-return]


_GENERATED_FIELDS = {"token", "workspace_id", "credentials_id"}


def _notice_of(command_id: UUID) -> Callable[[str], bool]:
    """Outcome notices of the command ("<command id>", or "<command id> <outcome>"),
    without splitting a body that may be kilobytes long."""
    wanted = str(command_id)
    end = len(wanted)
    return lambda payload: payload.startswith(wanted) and payload[end:end + 1] in ("", " ")


def _versions_of(projection: Projection) -> Callable[[str], bool]:
    """Notices of any version of the projection ("<projection>_v<n>:<id>:<version>")."""
    return lambda payload: payload.startswith(f"{projection.name}_v")


def _rejection(outcome: CommandOutcome) -> EddyError:
    return error_from_dict(outcome.error or {})
