"""The stream processors of this node, built from the container's dependencies.

Each is a consumer group: run more members (processes) of a group to scale it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters.bus.base import Message
from commands.executor import execute
from events.envelope import Envelope
from events.store import CommandOutcome
from projections.runner import ProjectionRunner
from projections.tables import PROJECTION_NAME
from schemas.commands import CommandEnvelope
from schemas.topics import (
    CLEANUP,
    COMMANDS,
    CONTEXT_OF_AGGREGATE,
    INDEXING_BULK,
    INDEXING_PRIORITY,
    event_topic,
    event_topics,
)
from workers.indexing import cleanup, fail_document, handle_indexing_message
from workers.runtime import Processor

if TYPE_CHECKING:
    from bootstrap import Container


def command_processor(c: Container) -> Processor:
    async def handle(message: Message) -> None:
        command = CommandEnvelope.from_json(message.value)
        await asyncio.to_thread(execute, c.store, command)

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        # The gateway (or a status poll) must learn that this command will never run.
        command = CommandEnvelope.from_json(message.value)
        await asyncio.to_thread(c.store.record_without_events, CommandOutcome(
            command_id=command.command_id, status="rejected", aggregate_id=command.aggregate_id,
            aggregate_version=None, position=None, result={},
            error={"code": "internal_server_error", "status": 500,
                   "message": f"Command failed after retries: {exc!r}"[:500]},
        ))

    return Processor(group="commands", topics=[COMMANDS], handle=handle,
                     on_dead_letter=on_dead_letter)


# The console read model follows these contexts' topics.
PROJECTION_CONTEXTS = ("workspace", "apps", "knowledge")


def projection_aggregate_types() -> list[str]:
    return sorted(a for a, ctx in CONTEXT_OF_AGGREGATE.items() if ctx in PROJECTION_CONTEXTS)


def projection_processor(c: Container) -> Processor:
    runner = ProjectionRunner(c.engine, PROJECTION_NAME)

    async def handle(message: Message) -> None:
        await runner.apply(Envelope.from_json(message.value))

    topics = [event_topic(ctx) for ctx in PROJECTION_CONTEXTS]
    assert set(topics) <= set(event_topics())
    return Processor(group=f"projection.{PROJECTION_NAME}", topics=topics, handle=handle)


def indexing_processor(lane_topic: str) -> Callable[[Container], Processor]:
    def build(c: Container) -> Processor:
        deps = c.indexing

        async def handle(message: Message) -> None:
            await handle_indexing_message(deps, message)

        async def on_dead_letter(message: Message, exc: BaseException) -> None:
            await fail_document(deps, message, exc)

        return Processor(group=lane_topic, topics=[lane_topic], handle=handle,
                         on_dead_letter=on_dead_letter)

    return build


def cleanup_processor(c: Container) -> Processor:
    deps = c.indexing

    async def handle(message: Message) -> None:
        await cleanup(deps, message)

    return Processor(group=CLEANUP, topics=[CLEANUP], handle=handle)


# role name -> processor factory; `eddy worker --roles` picks among these (and relay,
# scheduler). The two indexing lanes are separate groups, so a bulk backlog never delays
# a priority job, and each lane scales on its own.
PROCESSORS: dict[str, Callable[[Container], Processor]] = {
    "commands": command_processor,
    "projections": projection_processor,
    "indexing-priority": indexing_processor(INDEXING_PRIORITY),
    "indexing-bulk": indexing_processor(INDEXING_BULK),
    "cleanup": cleanup_processor,
}
