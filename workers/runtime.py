"""The processor runtime: a consumer-group member that feeds messages to a handler.

At-least-once: a message is acknowledged only after its handler finished; later messages of
its partition wait, keeping per-aggregate order. The failure policy:
- transient failures (a dependency unreachable or restarting, see adapters/transient.py) are
  retried with capped backoff for as long as they last, and never dead-lettered;
- deterministic failures are retried a few times, then the message is parked on the topic's
  dead-letter topic with its error and the processor's dead-letter hook runs, so whoever
  waits for it (a command's caller, a document's status) learns of the failure;
- a message delivered too often without ever finishing (it kills its worker) is parked too;
- a `PermanentFailure` (retrying cannot help) is parked at once.
A processor may bring its own RetryPolicy (the mail processor: its server's outages are
retried as its attempts, then parked, not waited out without limit).

Ownership: a handler runs under its message's `Ownership` (workers/ownership.py) while the
member keeps its partition (leases renewed however long the work takes). A watcher cancels
the handler the moment the partition is found to have moved (the member stalled past its
lease): the stale member stops instead of finishing, and acknowledges nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prometheus_client import Counter, Histogram

from adapters.bus.base import Bus, Consumer, Message
from adapters.transient import is_transient
from events.consumer_groups import GroupProgress
from events.envelope import Envelope
from events.registry import EventTypes
from events.replay import REPLAY_ID, skip_reason
from observability import correlation_id
from schemas.base import EventPayload
from schemas.topics import dead_letter_topic
from workers.ownership import LostOwnership, Ownership, owning

log = logging.getLogger(__name__)

MessageHandler = Callable[[Message], Awaitable[None]]
# Acknowledges handled messages of one partition, in order.
MessagesDone = Callable[[Sequence[Message]], Awaitable[None]]
EventHandler = Callable[[Envelope[Any]], Awaitable[None]]
DeadLetterHook = Callable[[Message, BaseException], Awaitable[None]]

# Observed only (process-wide registry): served by the gateway's /metrics in-process, and by
# WORKER_METRICS_PORT in a worker process.
HANDLER_SECONDS = Histogram("eddy_handler_duration_seconds",
                            "One handler call: a message, or a partition's batch", ["group"])
DEAD_LETTERED = Counter("eddy_dead_lettered_total", "Messages parked on a dead-letter topic",
                        ["group", "topic"])
HANDLED = Counter("eddy_group_messages_handled_total",
                  "Messages a consumer group handled and acknowledged (its throughput)",
                  ["group"])
REPLAYED = Counter("eddy_replayed_messages_total",
                   "Replayed messages a group received: passed to its handler (handled), or "
                   "skipped (meant for another group, or side effects not allowed)",
                   ["group", "outcome"])


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
    # Optional: one partition's fetched messages at once (e.g. one transaction for all). On
    # a failure that is not transient, they are handled one by one to isolate the culprit.
    handle_batch: Callable[[Sequence[Message]], Awaitable[None]] | None = None
    # Acts outside Eddy in a way that must not repeat (sends mail, calls webhooks or paid
    # LLM APIs): replayed messages are skipped unless the replay allows side effects.
    side_effects: bool = False
    # Its own attempts and backoff instead of the worker's (CONSUMER_MAX_ATTEMPTS)
    retry: RetryPolicy | None = None
    # > 0: up to this many messages in flight at once, within partitions too (one key's
    # messages still one after another), acknowledged in partition order; fetching goes on
    # while they run. For long handlers (a model's answer) that must not queue behind each
    # other in a partition.
    overlap: int = 0
    # Messages fetched at once (across its partitions). More for a `handle_batch` whose cost
    # is mostly per batch (a projection's transaction); handlers of one message at a time
    # keep it small, since a fetch's partitions all finish before the next fetch.
    fetch_max: int = 100


class PermanentFailure(Exception):
    """Raised by a handler for a failure retrying cannot cure (a mail server refused the
    mail for good): the message is dead-lettered at once."""


class PoisonMessage(Exception):
    """A message delivered again and again without ever being acknowledged: it kills (or
    hangs) whoever handles it, so it is parked instead of blocking its partition."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # deterministic failures (and deliveries that never finish)
    base_backoff: float = 0.05
    max_backoff: float = 5.0  # transient failures retry without limit, this far apart

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.base_backoff * 2 ** (attempt - 1))


async def run_processor(bus: Bus, processor: Processor, member: str, stop: asyncio.Event,
                        policy: RetryPolicy | None = None, concurrency: int = 8,
                        progress: GroupProgress | None = None) -> None:
    """Consume until `stop`: partitions are worked concurrently (at most `concurrency` at a
    time), each partition's messages one after another, so one key's messages stay in order.
    With `progress`, what the group handled is recorded for its lag (`eddy groups`)."""
    policy = processor.retry or policy or RetryPolicy()
    consumer = bus.consumer(processor.group, processor.topics, member)
    await consumer.start()
    log.info("processor started", extra={"group": processor.group, "member": member})
    if progress is not None:
        try:
            await progress.start(await bus.topic_partitions(processor.topics))
        except BaseException:
            await consumer.stop()
            raise

    async def done(messages: Sequence[Message]) -> None:
        # The broker being down must not fail finished work: wait for it to take the ack.
        await _until_done(partial(consumer.ack_many, messages), policy, stop, processor,
                          messages[0])
        HANDLED.labels(processor.group).inc(len(messages))
        if progress is not None:
            for message in messages:
                progress.handled(message.topic, message.partition, message.headers)

    try:
        if processor.overlap > 0:
            await _run_overlapping(bus, consumer, done, processor, policy, stop)
        else:
            await _run_partitions(bus, consumer, done, processor, policy, stop, concurrency)
    finally:
        if progress is not None:
            await progress.stop()


async def _run_partitions(bus: Bus, consumer: Consumer, done: MessagesDone,
                          processor: Processor, policy: RetryPolicy, stop: asyncio.Event,
                          concurrency: int) -> None:
    """Partitions worked concurrently (at most `concurrency` at a time), each partition's
    messages one after another."""
    gate = asyncio.Semaphore(concurrency)

    async def work(partition: list[Message]) -> bool:
        async with gate:
            partition = await _skip_replays(consumer, processor, partition)
            if not partition:
                return True
            if processor.handle_batch is not None and len(partition) > 1:
                batch = await _deliver_batch(consumer, done, processor, partition, policy,
                                             stop)
                if batch is not None:
                    return batch
            for message in partition:
                # Unacknowledged when stopping or no longer ours: redelivered to whoever
                # owns the partition (now or next); a stale member must not race the new one.
                if stop.is_set() or not await consumer.owns(message):
                    return False
                if not await _deliver(bus, consumer, processor, message, policy, stop):
                    return False
                await done([message])
            return True

    try:
        while not stop.is_set():
            batch = await _fetch(consumer, processor, processor.fetch_max, policy, stop)
            partitions: dict[tuple[str, int], list[Message]] = {}
            for message in batch:
                partitions.setdefault((message.topic, message.partition), []).append(message)
            await asyncio.gather(*(work(ms) for ms in partitions.values()))
    finally:
        await consumer.stop()


async def _fetch(consumer: Consumer, processor: Processor, max_messages: int,
                 policy: RetryPolicy, stop: asyncio.Event) -> list[Message]:
    """The next messages; a broker outage is waited out here, inside the member, so the
    work in flight goes on (a restarted member would cancel it and pay for it again)."""
    attempt = 0
    while not stop.is_set():
        try:
            return await consumer.fetch(max_messages=max_messages, timeout=0.5)
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            log.warning("fetch failed, waiting for the broker", extra={
                "group": processor.group, "attempt": attempt, "error": repr(exc)[:300]})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), policy.backoff(attempt))
    return []


async def _skip_replays(consumer: Consumer, processor: Processor,
                        partition: list[Message]) -> list[Message]:
    """Acknowledge the replayed messages this group must not handle; the rest, in order."""
    out = []
    for message in partition:
        reason = skip_reason(message.headers, processor.group, processor.side_effects)
        if reason is None:
            if REPLAY_ID in message.headers:
                REPLAYED.labels(processor.group, "handled").inc()
            out.append(message)
            continue
        log.debug("replayed message skipped", extra={
            "group": processor.group, "topic": message.topic, "key": message.key,
            "replay_id": message.headers[REPLAY_ID], "reason": reason})
        REPLAYED.labels(processor.group, "skipped").inc()
        await consumer.ack(message)
    return out


OVERLAP_GRACE_SECONDS = 10.0  # on stop, in-flight handlers get this long before cancelling


async def _run_overlapping(bus: Bus, consumer: Consumer, done: MessagesDone,
                           processor: Processor, policy: RetryPolicy,
                           stop: asyncio.Event) -> None:
    """`processor.overlap` messages in flight; each partition acknowledged in order, up to
    its first message that did not finish (it and those after it are delivered again)."""
    in_flight: set[asyncio.Task[None]] = set()
    room = asyncio.Event()
    room.set()
    tails: dict[str, asyncio.Task[None]] = {}  # a key's latest message: the next one waits
    unacked: dict[tuple[str, int], deque[tuple[Message, asyncio.Future[bool]]]] = {}

    async def acknowledge(partition: tuple[str, int]) -> None:
        queue = unacked[partition]
        while queue and queue[0][1].done():
            message, finished = queue.popleft()
            if finished.result():
                await done([message])
            else:
                # Stopping, or the partition moved: it and what follows are delivered again.
                queue.clear()

    async def work(message: Message, before: asyncio.Task[None] | None,
                   finished: asyncio.Future[bool]) -> None:
        handled = False
        try:
            if before is not None:
                await asyncio.wait({before})
            if not stop.is_set() and await consumer.owns(message):
                handled = await _deliver(bus, consumer, processor, message, policy, stop)
        finally:
            finished.set_result(handled)
            if tails.get(message.key) is asyncio.current_task():
                del tails[message.key]
        await acknowledge((message.topic, message.partition))

    def finished_one(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        room.set()

    def start(message: Message) -> None:
        finished: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        unacked.setdefault((message.topic, message.partition), deque()).append(
            (message, finished))
        task = asyncio.create_task(work(message, tails.get(message.key), finished))
        tails[message.key] = task
        in_flight.add(task)
        task.add_done_callback(finished_one)

    try:
        while not stop.is_set():
            free = processor.overlap - len(in_flight)
            if free <= 0:
                room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(room.wait(), 0.5)
                continue
            fetched = await _fetch(consumer, processor, free, policy, stop)
            by_partition: dict[tuple[str, int], list[Message]] = {}
            for message in fetched:
                by_partition.setdefault((message.topic, message.partition), []).append(message)
            for messages in by_partition.values():
                for message in await _skip_replays(consumer, processor, messages):
                    start(message)
    finally:
        if in_flight:
            _, late = await asyncio.wait(in_flight, timeout=OVERLAP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await consumer.stop()


async def _deliver_batch(consumer: Consumer, done: MessagesDone, processor: Processor,
                         partition: list[Message], policy: RetryPolicy,
                         stop: asyncio.Event) -> bool | None:
    """The partition's messages in one go: True when done and acknowledged, False when told
    to stop or the partition moved, None to fall back to one by one (a message failed)."""
    assert processor.handle_batch is not None
    if stop.is_set() or not await consumer.owns(partition[0]):
        return False
    if any(m.redeliveries >= policy.max_attempts for m in partition):
        return None  # a poison candidate: the single path parks it
    try:
        with HANDLER_SECONDS.labels(processor.group).time():
            handled = await _until_done(
                partial(_owned, consumer, partition[0],
                        partial(processor.handle_batch, partition)),
                policy, stop, processor, partition[0])
    except asyncio.CancelledError:
        raise
    except LostOwnership as lost:
        _log_lost(processor, partition[0], lost)
        return False
    except Exception as exc:
        log.info("batch failed, handling its messages one by one", extra={
            "group": processor.group, "topic": partition[0].topic, "error": repr(exc)[:300]})
        return None
    if handled:
        await done(partition)
    return handled


async def _deliver(bus: Bus, consumer: Consumer, processor: Processor, message: Message,
                   policy: RetryPolicy, stop: asyncio.Event) -> bool:
    """Handle the message until it is done (handled or dead-lettered): True, or False when
    told to stop first or the message moved to another member. Transient failures wait for
    the dependency without limit."""
    token = correlation_id.set(message.headers.get("correlation_id"))
    handle = partial(_owned, consumer, message, partial(processor.handle, message))

    def dead_letter(exc: BaseException, attempts: int) -> Callable[[], Awaitable[None]]:
        return partial(_owned, consumer, message,
                       partial(_dead_letter, bus, processor, message, exc, attempts))

    try:
        if message.redeliveries >= policy.max_attempts:
            poison = PoisonMessage(f"delivered {message.redeliveries + 1} times and never "
                                   "finished: it kills or hangs its worker")
            return await _until_done(dead_letter(poison, message.redeliveries + 1),
                                     policy, stop, processor, message)
        failures = 0
        while True:
            try:
                with HANDLER_SECONDS.labels(processor.group).time():
                    await handle()
                return True
            except (asyncio.CancelledError, LostOwnership):
                raise
            except Exception as exc:
                if is_transient(exc):
                    return await _until_done(handle, policy, stop, processor, message,
                                             first_error=exc)
                failures += 1
                if failures >= policy.max_attempts or isinstance(exc, PermanentFailure):
                    return await _until_done(dead_letter(exc, failures),
                                             policy, stop, processor, message)
                log.warning("handler failed, retrying", extra={
                    "group": processor.group, "topic": message.topic, "key": message.key,
                    "attempt": failures, "error": repr(exc),
                })
                await asyncio.sleep(policy.backoff(failures))
    except LostOwnership as lost:
        _log_lost(processor, message, lost)
        return False
    finally:
        correlation_id.reset(token)


# How often a running handler's ownership is confirmed (no I/O while the member's lease
# rounds are on time; a round trip when they are late, e.g. after the process stalled).
OWNERSHIP_CHECK_SECONDS = 0.5


async def _owned(consumer: Consumer, message: Message,
                 step: Callable[[], Awaitable[None]]) -> None:
    """Run `step` as the message's owner: the member keeps its partition meanwhile (see
    Consumer.working), the step sees its Ownership, and is cancelled, raising
    LostOwnership, as soon as the partition is found to have moved."""
    with consumer.working():
        with owning(Ownership(consumer, message)):
            task = asyncio.create_task(step())  # inherits the ownership (context variables)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=OWNERSHIP_CHECK_SECONDS)
                if done:
                    return task.result()
                try:
                    owned = await consumer.owns(message)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # cannot tell now (bus unreachable): keep on
                    log.debug("ownership check failed", extra={"error": repr(exc)[:300]})
                    continue
                if not owned:
                    task.cancel()
                    await asyncio.wait({task})
                    raise LostOwnership(f"{message.topic}[{message.partition}] moved to "
                                        "another member")
        finally:
            if not task.done():  # we were cancelled (stopping): so is the step
                task.cancel()
                await asyncio.wait({task})


def _log_lost(processor: Processor, message: Message, lost: LostOwnership) -> None:
    log.warning("handler stopped: its message moved to another member", extra={
        "group": processor.group, "topic": message.topic, "key": message.key,
        "error": str(lost)})


async def _until_done(step: Callable[[], Awaitable[None]], policy: RetryPolicy,
                      stop: asyncio.Event, processor: Processor, message: Message,
                      first_error: BaseException | None = None) -> bool:
    """Run `step` until it succeeds, waiting out transient failures (capped backoff, no
    limit); a deterministic failure here is re-raised. False when told to stop first."""
    attempt, error = 0, first_error
    while True:
        if error is not None:
            attempt += 1
            log.warning("dependency unavailable, waiting", extra={
                "group": processor.group, "topic": message.topic, "key": message.key,
                "attempt": attempt, "error": repr(error)[:300],
            })
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), policy.backoff(attempt))
            if stop.is_set():
                return False
        try:
            await step()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            error = exc


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
    DEAD_LETTERED.labels(processor.group, message.topic).inc()
    if processor.on_dead_letter is not None:
        await processor.on_dead_letter(message, exc)
