"""The backbone's stream processors: command handling and the projections. Each is a consumer
group: run more members (processes) of a group to scale it out. Contexts add their own
processors through their manifests (e.g. `workers/knowledge/processors.py`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from adapters.bus.base import Message
from adapters.transient import is_transient
from commands.executor import execute, execute_group
from events.envelope import Envelope
from events.store import CommandOutcome
from projections.parking import park
from projections.registry import Projection
from projections.runner import ProjectionRunner
from projections.versions import ProjectionVersion, maintained_versions
from schemas.base import CommandEnvelope, EventPayload
from schemas.topics import COMMANDS
from workers.container import WorkerContainer
from workers.runtime import Processor, decoding

log = logging.getLogger(__name__)


def command_processor(c: WorkerContainer) -> Processor:
    async def handle(message: Message) -> None:
        command = CommandEnvelope.from_json(message.value)
        await asyncio.to_thread(execute, c.store, c.handlers, command)

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        # The gateway (or a status poll) must learn that this command will never run.
        command = CommandEnvelope.from_json(message.value)
        await asyncio.to_thread(c.store.record_without_events, CommandOutcome(
            command_id=command.command_id, status="rejected", aggregate_id=command.aggregate_id,
            aggregate_version=None, position=None, result={},
            # The caller sees Dify's generic 500; the cause is in the dead letter and the log.
            error={"code": "internal_server_error", "status": 500,
                   "message": "Internal Server Error"},
            tenant_id=command.tenant_id,
        ))

    async def handle_group(messages: Sequence[Message]) -> None:
        # A partition's fetched commands in one transaction (group commit).
        commands = [CommandEnvelope.from_json(m.value) for m in messages]
        await asyncio.to_thread(execute_group, c.store, c.handlers, commands)

    return Processor(group="commands", topics=[COMMANDS], handle=handle,
                     on_dead_letter=on_dead_letter, handle_batch=handle_group)


PROJECTION_GROUP_PREFIX = "projection."
# A projection's batch costs a few round trips whatever its size (tracking, one statement
# per run of a type, the acknowledgement): a catch-up goes as fast as its batches are big.
PROJECTION_FETCH = 1000


def projection_of_group(group: str) -> str | None:
    """The projection a consumer group applies (None: not a projection's group)."""
    return group.removeprefix(PROJECTION_GROUP_PREFIX) if group.startswith(
        PROJECTION_GROUP_PREFIX) else None


def projection_processor(c: WorkerContainer, projection: Projection) -> Processor:
    """One consumer group per projection, applying each batch to every maintained version
    of it (`projections/versions.py`): those a rebuild is catching up or kept for rollback
    first, the active one last. The registry is read per batch, so a version a rebuild
    registers gets every event delivered after that (the rebuild's own catch-up from the
    event store covers the ones before).

    Each version advances on its own: its own transaction and tracking, so a version that
    fails (a new layout's bug) never stops the others from applying the event. The message
    is retried for the failing version alone (the others skip it as applied); when the
    runtime gives up, the dead-letter hook parks the event in the versions that have not
    applied it (`projections/parking.py`), and the others never waited for it."""
    runners: dict[tuple[str, int], ProjectionRunner] = {}

    def runner(version: ProjectionVersion) -> ProjectionRunner:
        key = (version.schema, version.layout)
        if key not in runners:
            runners[key] = ProjectionRunner(c.read_models.engine_for(version), projection,
                                            c.store, version.schema)
        return runners[key]

    async def apply(events: Sequence[Envelope[EventPayload]]) -> None:
        failures: list[Exception] = []
        for version in await maintained_versions(c.read_models.database, projection.name):
            try:
                await runner(version).apply_many(events)
            except Exception as exc:
                log.warning("projection version failed to apply", extra={
                    "version": version.schema, "events": len(events), "error": repr(exc)[:300]})
                failures.append(exc)
        if failures:
            # A dependency that is down is waited for; otherwise the message is retried
            # and, if it keeps failing, parked where it failed.
            raise next((f for f in failures if is_transient(f)), failures[0])

    async def apply_batch(messages: Sequence[Message]) -> None:
        await apply([c.event_types.envelope_from_json(m.value) for m in messages])

    async def apply_one(event: Envelope[EventPayload]) -> None:
        await apply([event])

    async def park_where_not_applied(message: Message, exc: BaseException) -> None:
        try:
            event = c.event_types.envelope_from_json(message.value)
        except Exception:
            log.exception("dead letter is no event: nothing to park")
            return
        for version in await maintained_versions(c.read_models.database, projection.name):
            await park(c.read_models.database, version.schema, event, exc)

    # Batched: one partition's fetched events in one transaction per version.
    return Processor(group=PROJECTION_GROUP_PREFIX + projection.name, topics=projection.topics,
                     handle=decoding(c.event_types, apply_one), handle_batch=apply_batch,
                     on_dead_letter=park_where_not_applied, fetch_max=PROJECTION_FETCH)
