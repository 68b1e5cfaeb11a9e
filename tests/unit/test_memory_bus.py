"""The in-memory bus: the shared contract (tests/contracts/bus.py), and what it adds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from adapters.bus.base import TopicSpec, partition_for
from adapters.bus.memory import InMemoryBus
from tests.contracts.bus import TOPIC, TrimsConsumedContract


class TestInMemoryBus(TrimsConsumedContract):
    """The unit tier's bus keeps the contract; its members live in this process only."""

    counts_redeliveries = True

    @pytest_asyncio.fixture
    async def bus(self) -> AsyncIterator[InMemoryBus]:
        bus = InMemoryBus()
        await bus.start()
        yield bus
        await bus.stop()


@pytest_asyncio.fixture
async def bus() -> AsyncIterator[InMemoryBus]:
    bus = InMemoryBus()
    await bus.start()
    await bus.ensure_topics([TopicSpec(TOPIC, 4)])
    yield bus
    await bus.stop()


async def test_a_waiting_fetch_wakes_on_publish(bus: InMemoryBus) -> None:
    consumer = bus.consumer("g", [TOPIC], "m1")
    await consumer.start()
    try:
        started = time.monotonic()
        fetch = asyncio.create_task(consumer.fetch(timeout=5))
        await asyncio.sleep(0.05)
        assert not fetch.done()
        await bus.publish(TOPIC, "k", b"v")
        got = await fetch
        assert [m.value for m in got] == [b"v"]
        assert time.monotonic() - started < 1
    finally:
        await consumer.stop()


async def test_stop_ends_a_waiting_fetch(bus: InMemoryBus) -> None:
    consumer = bus.consumer("g", [TOPIC], "m1")
    await consumer.start()
    fetch = asyncio.create_task(consumer.fetch(timeout=5))
    await asyncio.sleep(0.05)
    await consumer.stop()
    async with asyncio.timeout(1):
        assert await fetch == []


async def test_a_joining_member_gets_the_unacked_messages_of_its_partitions(
    bus: InMemoryBus,
) -> None:
    first = bus.consumer("g", [TOPIC], "a")
    await first.start()
    keys = [f"agg-{i}" for i in range(12)]
    for key in keys:
        await bus.publish(TOPIC, key, key.encode())
    held = await first.fetch(timeout=0)
    assert len(held) == 12
    acked = {m.key for m in held if m.partition == 1}
    for m in held:
        if m.partition == 1:
            await first.ack(m)

    second = bus.consumer("g", [TOPIC], "b")
    await second.start()
    try:
        moved = await second.fetch(timeout=0)
        # Members split the 4 partitions by name: "b" gets partitions 1 and 3.
        assert {m.partition for m in moved} == {3}
        assert sorted(m.key for m in moved) == sorted(k for k in keys if partition_for(k, 4) == 3)
        assert not {m.key for m in moved} & acked
        assert all(m.redeliveries == 1 for m in moved)
        assert await first.fetch(timeout=0) == []  # kept its partitions, already has them
    finally:
        await second.stop()
        await first.stop()


async def test_an_ack_by_the_previous_owner_still_counts(bus: InMemoryBus) -> None:
    first = bus.consumer("g", [TOPIC], "a")
    await first.start()
    await bus.publish(TOPIC, "k", b"v")
    (message,) = await first.fetch(timeout=0)
    await first.stop()
    await first.ack(message)  # e.g. the handler finished while the member was stopping

    second = bus.consumer("g", [TOPIC], "b")
    await second.start()
    try:
        assert await second.fetch(timeout=0) == []
    finally:
        await second.stop()


async def test_headers_are_copied(bus: InMemoryBus) -> None:
    headers = {"type": "AppCreated"}
    await bus.publish(TOPIC, "k", b"v", headers)
    headers["type"] = "changed"
    consumer = bus.consumer("g", [TOPIC], "m1")
    await consumer.start()
    (message,) = await consumer.fetch(timeout=0)
    message.headers["type"] = "changed too"
    await consumer.stop()

    await consumer.start()  # same member back: the unacked message comes again
    try:
        (again,) = await consumer.fetch(timeout=0)
        assert again.headers == {"type": "AppCreated"}
        assert again.redeliveries == 1
    finally:
        await consumer.stop()


async def test_unknown_topics_and_unstarted_use_are_refused(bus: InMemoryBus) -> None:
    with pytest.raises(LookupError):
        await bus.consumer("g", ["never.created"], "m1").start()
    with pytest.raises(RuntimeError):
        await bus.consumer("g", [TOPIC], "m1").fetch()
    stopped = InMemoryBus()
    with pytest.raises(RuntimeError):
        await stopped.publish(TOPIC, "k", b"v")


async def test_an_existing_topic_keeps_its_partition_count(bus: InMemoryBus) -> None:
    await bus.ensure_topics([TopicSpec(TOPIC, 8)])
    assert bus.partition_count(TOPIC) == 4


async def test_member_names_are_unique_among_live_members(bus: InMemoryBus) -> None:
    first = bus.consumer("g", [TOPIC], "m1")
    await first.start()
    try:
        with pytest.raises(ValueError):
            await bus.consumer("g", [TOPIC], "m1").start()
        other_group = bus.consumer("other", [TOPIC], "m1")
        await other_group.start()  # another group: fine
        await other_group.stop()
    finally:
        await first.stop()


async def test_members_with_different_topics_share_a_group(bus: InMemoryBus) -> None:
    await bus.ensure_topics([TopicSpec("audit", 2)])
    both = bus.consumer("g", [TOPIC, "audit"], "a")
    only_audit = bus.consumer("g", ["audit"], "b")
    await both.start()
    await only_audit.start()
    try:
        for i in range(20):
            await bus.publish(TOPIC, f"k{i}", b"x")
            await bus.publish("audit", f"k{i}", b"y")
        got_a = await both.fetch(timeout=0)
        got_b = await only_audit.fetch(timeout=0)
        # Balanced as far as subscriptions allow: "b" can only take "audit", so it gets both
        # of its partitions and "a" keeps the four it alone can read.
        assert {(m.topic, m.partition) for m in got_a} == {(TOPIC, p) for p in range(4)}
        assert {(m.topic, m.partition) for m in got_b} == {("audit", 0), ("audit", 1)}
        assert len(got_a) + len(got_b) == 40
    finally:
        await both.stop()
        await only_audit.stop()
