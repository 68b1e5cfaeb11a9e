"""The processor runtime's failure policy, on the in-memory bus: transient failures wait
without limit and are never dead-lettered; deterministic ones are parked after N attempts;
a message that keeps killing its worker is parked by its delivery count; partitions are
worked concurrently, each in order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

import pytest

from adapters.bus.base import Message, TopicSpec
from adapters.bus.memory import InMemoryBus
from workers.ownership import current_fence
from workers.runtime import (
    PermanentFailure,
    PoisonMessage,
    Processor,
    RetryPolicy,
    run_processor,
)

TOPIC = "work"
FAST = RetryPolicy(max_attempts=3, base_backoff=0.001, max_backoff=0.01)


@pytest.fixture
async def bus() -> InMemoryBus:
    bus = InMemoryBus()
    await bus.start()
    await bus.ensure_topics([TopicSpec(TOPIC, 4), TopicSpec(TOPIC + ".dlq", 1)])
    return bus


async def run_until(bus: InMemoryBus, processor: Processor, done: asyncio.Event,
                    concurrency: int = 8) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_processor(bus, processor, "m1", stop, FAST, concurrency))
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def dead_letters(bus: InMemoryBus) -> list[Message]:
    consumer = bus.consumer("inspect", [TOPIC + ".dlq"], "i")
    await consumer.start()
    try:
        return await consumer.fetch(timeout=0.1)
    finally:
        await consumer.stop()


async def test_a_transient_failure_is_waited_out_never_dead_lettered(bus: InMemoryBus) -> None:
    await bus.publish(TOPIC, "k", b"v")
    calls, done = 0, asyncio.Event()

    async def handle(message: Message) -> None:
        nonlocal calls
        calls += 1
        if calls <= 10:  # far more than max_attempts
            raise ConnectionRefusedError("database restarting")
        done.set()

    await run_until(bus, Processor("g", [TOPIC], handle), done)
    assert calls == 11
    assert await dead_letters(bus) == []


async def test_a_deterministic_failure_is_parked_after_its_attempts(bus: InMemoryBus) -> None:
    await bus.publish(TOPIC, "k", b"bad", {"correlation_id": "c-1"})
    await bus.publish(TOPIC, "k", b"good")
    seen: list[bytes] = []
    parked: list[tuple[bytes, str]] = []
    done = asyncio.Event()

    async def handle(message: Message) -> None:
        seen.append(message.value)
        if message.value == b"bad":
            raise ValueError("cannot parse")
        done.set()

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        parked.append((message.value, repr(exc)))

    await run_until(bus, Processor("g", [TOPIC], handle, on_dead_letter), done)
    assert seen == [b"bad"] * FAST.max_attempts + [b"good"]  # the partition moved on
    assert parked == [(b"bad", "ValueError('cannot parse')")]
    (letter,) = await dead_letters(bus)
    assert letter.headers["dlq_attempts"] == "3" and letter.headers["dlq_group"] == "g"
    assert "cannot parse" in letter.headers["dlq_error"]
    assert letter.headers["correlation_id"] == "c-1"


async def test_a_permanent_failure_is_parked_at_once(bus: InMemoryBus) -> None:
    await bus.publish(TOPIC, "k", b"refused")
    await bus.publish(TOPIC, "k", b"good")
    seen: list[bytes] = []
    done = asyncio.Event()

    async def handle(message: Message) -> None:
        seen.append(message.value)
        if message.value == b"refused":
            raise PermanentFailure("550 no such mailbox")
        done.set()

    await run_until(bus, Processor("g", [TOPIC], handle), done)
    assert seen == [b"refused", b"good"]
    (letter,) = await dead_letters(bus)
    assert letter.headers["dlq_attempts"] == "1" and "550" in letter.headers["dlq_error"]


async def test_a_processor_with_its_own_policy_gets_its_own_attempts(bus: InMemoryBus) -> None:
    await bus.publish(TOPIC, "k", b"bad")
    calls, done = 0, asyncio.Event()

    async def handle(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("server down")

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        done.set()

    own = RetryPolicy(max_attempts=FAST.max_attempts + 4, base_backoff=0.001, max_backoff=0.01)
    await run_until(bus, Processor("g", [TOPIC], handle, on_dead_letter, retry=own), done)
    assert calls == own.max_attempts  # not the worker's FAST.max_attempts


async def test_a_message_that_keeps_killing_its_worker_is_parked(bus: InMemoryBus) -> None:
    await bus.publish(TOPIC, "k", b"zip-bomb")
    # Three members in a row fetch it and "die" (stop without acknowledging).
    for member in ("a", "b", "c"):
        consumer = bus.consumer("g", [TOPIC], member)
        await consumer.start()
        assert [m.value for m in await consumer.fetch(timeout=0.1)] == [b"zip-bomb"]
        await consumer.stop()
    handled: list[Message] = []
    parked: list[BaseException] = []
    done = asyncio.Event()

    async def handle(message: Message) -> None:
        handled.append(message)

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        parked.append(exc)
        done.set()

    await run_until(bus, Processor("g", [TOPIC], handle, on_dead_letter), done)
    assert handled == []  # never handed to the handler again
    assert len(parked) == 1 and isinstance(parked[0], PoisonMessage)
    (letter,) = await dead_letters(bus)
    assert letter.value == b"zip-bomb" and "kills or hangs" in letter.headers["dlq_error"]


async def test_partitions_run_concurrently_and_each_stays_in_order(bus: InMemoryBus) -> None:
    keys = [f"agg-{i}" for i in range(12)]
    for n in range(5):
        for key in keys:
            await bus.publish(TOPIC, key, f"{key}:{n}".encode())
    order: dict[str, list[int]] = defaultdict(list)
    running = peak = 0
    done = asyncio.Event()

    async def handle(message: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        key, n = message.value.decode().split(":")
        order[key].append(int(n))
        running -= 1
        if sum(map(len, order.values())) == 60:
            done.set()

    await run_until(bus, Processor("g", [TOPIC], handle), done, concurrency=4)
    assert all(order[k] == [0, 1, 2, 3, 4] for k in keys)
    assert 1 < peak <= 4


async def test_a_handler_whose_partition_moves_is_stopped_and_its_message_handled_elsewhere(
        bus: InMemoryBus) -> None:
    """Member m1 is mid-message when m2 joins and takes some partitions over: m1's handlers
    on the moved partitions are cancelled (nothing after that takes effect), and m2 handles
    those messages from the start; every message finishes exactly once."""
    for key in ("a", "b", "c", "d", "e", "f", "g", "h"):
        await bus.publish(TOPIC, key, key.encode())
    started: dict[str, list[str]] = defaultdict(list)
    finished: dict[str, list[str]] = defaultdict(list)
    cancelled: list[str] = []
    release = asyncio.Event()

    def processor(member: str) -> Processor:
        async def handle(message: Message) -> None:
            started[message.key].append(member)
            assert current_fence() == message.fence
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.append(message.key)
                raise
            finished[message.key].append(member)

        return Processor("g", [TOPIC], handle, overlap=8)  # all eight in flight at once

    stop = asyncio.Event()
    first = asyncio.create_task(run_processor(bus, processor("m1"), "m1", stop, FAST))
    await _until(lambda: len(started) == 8)  # all in flight on m1
    second = asyncio.create_task(run_processor(bus, processor("m2"), "m2", stop, FAST))
    # the moved ones restarted on m2, and no more moving (partitions move one by one: a
    # loaded machine may show the first moved before the last is cancelled)
    await _until(lambda: cancelled and all("m2" in started[k] for k in cancelled))
    await _steady(lambda: (len(cancelled), sum(map(len, started.values()))))
    assert all("m2" in started[k] for k in cancelled)
    release.set()
    await _until(lambda: len(finished) == 8)
    stop.set()
    await asyncio.gather(first, second)
    assert all(len(members) == 1 for members in finished.values())
    assert sorted(k for k, members in finished.items() if members == ["m2"]) == sorted(cancelled)


async def _steady(state: Callable[[], object], polls: int = 30) -> None:
    """Until `state` has not changed for `polls` polls in a row."""
    last, same = state(), 0
    while same < polls:
        await asyncio.sleep(0.01)
        now = state()
        same = same + 1 if now == last else 0
        last = now


async def _until(check: Callable[[], object], polls: int = 1000) -> None:
    for _ in range(polls):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")
