"""The processor runtime: a consumer-group member that feeds messages to a handler.

At-least-once: a message is acknowledged only after its handler finished. A failing message
is retried in place (later messages of its partition wait, keeping per-aggregate order), then
parked on the topic's dead-letter topic with its error, and the processor's dead-letter hook
runs so that whoever waits for it learns of the failure.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.bus.base import Bus, Message
from events.envelope import Envelope
from events.registry import EventTypes
from observability import correlation_id
from schemas.base import EventPayload
from schemas.topics import dead_letter_topic

log = logging.getLogger(__name__)

MessageHandler = Callable[[Message], Awaitable[None]]
EventHandler = Callable[[Envelope[Any]], Awaitable[None]]
DeadLetterHook = Callable[[Message, BaseException], Awaitable[None]]


def decoding(types: EventTypes, handle: EventHandler) -> MessageHandler:
    """A message handler that decodes the event once (upcast, typed payload) and hands it on."""

    async def handle_message(message: Message) -> None:
        await handle(types.envelope_from_json(message.value))

    return handle_message


def by_type(handlers: Mapping[type[EventPayload], EventHandler]) -> EventHandler:
    """Dispatch on the payload's class. A work topic carries only what its processor acts
    on; on a context topic, types with no handler are other processors' business."""

    async def dispatch(event: Envelope[EventPayload]) -> None:
        handler = handlers.get(type(event.payload))
        if handler is not None:
            await handler(event)

    return dispatch


@dataclass
class Processor:
    """What a stream processor is: a group name, its topics, and its handler."""

    group: str
    topics: Sequence[str]
    handle: MessageHandler
    on_dead_letter: DeadLetterHook | None = None


async def run_processor(bus: Bus, processor: Processor, member: str, stop: asyncio.Event,
                        max_attempts: int = 5, base_backoff: float = 0.05) -> None:
    consumer = bus.consumer(processor.group, processor.topics, member)
    await consumer.start()
    log.info("processor started", extra={"group": processor.group, "member": member})
    try:
        while not stop.is_set():
            for message in await consumer.fetch(max_messages=100, timeout=0.5):
                if stop.is_set():
                    return  # unacknowledged: redelivered to whoever owns the partition next
                await _deliver(bus, processor, message, max_attempts, base_backoff)
                await consumer.ack(message)
    finally:
        await consumer.stop()


async def _deliver(bus: Bus, processor: Processor, message: Message, max_attempts: int,
                   base_backoff: float) -> None:
    token = correlation_id.set(message.headers.get("correlation_id"))
    try:
        for attempt in range(1, max_attempts + 1):
            try:
                await processor.handle(message)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == max_attempts:
                    await _dead_letter(bus, processor, message, exc, attempt)
                    return
                log.warning("handler failed, retrying", extra={
                    "group": processor.group, "topic": message.topic, "key": message.key,
                    "attempt": attempt, "error": repr(exc),
                })
                await asyncio.sleep(base_backoff * 2 ** (attempt - 1))
    finally:
        correlation_id.reset(token)


async def _dead_letter(bus: Bus, processor: Processor, message: Message, exc: BaseException,
                       attempts: int) -> None:
    log.error("message dead-lettered", extra={
        "group": processor.group, "topic": message.topic, "key": message.key, "error": repr(exc),
    })
    headers = {
        **message.headers,
        "dlq_error": repr(exc)[:2000],
        "dlq_traceback": "".join(traceback.format_exception(exc))[-4000:],
        "dlq_group": processor.group,
        "dlq_source_topic": message.topic,
        "dlq_source_partition": str(message.partition),
        "dlq_attempts": str(attempts),
        "dlq_failed_at": datetime.now(UTC).isoformat(),
    }
    await bus.publish(dead_letter_topic(message.topic), message.key, message.value, headers)
    if processor.on_dead_letter is not None:
        await processor.on_dead_letter(message, exc)
