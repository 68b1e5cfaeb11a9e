"""The backbone's stream processors: command handling and the projections. Each is a consumer
group: run more members (processes) of a group to scale it out. Contexts add their own
processors through their manifests (e.g. `workers/knowledge/processors.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapters.bus.base import Message
from commands.executor import execute, execute_group
from events.store import CommandOutcome
from projections.registry import Projection
from projections.runner import ProjectionRunner
from schemas.base import CommandEnvelope
from schemas.topics import COMMANDS
from workers.container import WorkerContainer
from workers.runtime import Processor, decoding


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
        ))

    async def handle_group(messages: Sequence[Message]) -> None:
        # A partition's fetched commands in one transaction (group commit).
        commands = [CommandEnvelope.from_json(m.value) for m in messages]
        await asyncio.to_thread(execute_group, c.store, c.handlers, commands)

    return Processor(group="commands", topics=[COMMANDS], handle=handle,
                     on_dead_letter=on_dead_letter, handle_batch=handle_group)


def projection_processor(c: WorkerContainer, projection: Projection) -> Processor:
    runner = ProjectionRunner(c.engine, projection, c.store)

    async def apply_batch(messages: Sequence[Message]) -> None:
        await runner.apply_many([c.event_types.envelope_from_json(m.value) for m in messages])

    # Batched: one partition's fetched events in one transaction.
    return Processor(group=f"projection.{projection.name}", topics=projection.topics,
                     handle=decoding(c.event_types, runner.apply),  # type: ignore[arg-type]
                     handle_batch=apply_batch)
