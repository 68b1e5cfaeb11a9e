"""The event bus contract: what every backend must do, as mixins a backend's test class
combines with its own `bus` fixture (a started bus, stopped at teardown).

`BusContract` holds for every backend; `MembersInOtherProcessesContract` for those whose
group members can run in other processes (and be SIGKILLed there); `TrimsConsumedContract`
for those that drop acknowledged messages themselves. Subclasses: the in-memory bus in
tests/unit/test_memory_bus.py, Redis Streams and Kafka in tests/integration/test_bus.py,
where each test's bus gets its own topic prefix, so tests share one server without seeing
each other's topics, groups or leases.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from adapters.bus.base import (
    Bus,
    Consumer,
    Message,
    OutgoingMessage,
    TopicSpec,
    partition_for,
)

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "events.test"

StartMembers = Callable[..., Awaitable[list[Consumer]]]

# A group member in its own process, so the test can SIGKILL it like a crashed worker.
MEMBER_PROCESS = """
import asyncio, json, sys

async def main():
    cfg = json.loads(sys.argv[1])
    if cfg["backend"] == "redis":
        from adapters.bus.redis_streams import RedisStreamsBus
        bus = RedisStreamsBus(cfg["address"], prefix=cfg["prefix"], lease_seconds=cfg["lease"])
    else:
        from adapters.bus.kafka import KafkaBus
        bus = KafkaBus(cfg["address"], prefix=cfg["prefix"], session_timeout_ms=cfg["session"])
    await bus.start()
    consumer = bus.consumer(cfg["group"], [cfg["topic"]], cfg["member"])
    await consumer.start()
    print("ready", flush=True)
    got = []
    while len(got) < cfg["expect"]:
        got += await consumer.fetch(timeout=0.5)
    print(json.dumps([m.value.decode() for m in got]), flush=True)
    await asyncio.sleep(3600)  # holds the messages unacked until killed

asyncio.run(main())
"""


async def collect(
    consumers: Sequence[Consumer],
    count: int,
    *,
    ack: bool | Sequence[bool] = True,
    within: float = 20.0,
) -> list[list[Message]]:
    """Fetch from all members concurrently until `count` messages arrived in total."""
    acks = [ack] * len(consumers) if isinstance(ack, bool) else list(ack)
    got: list[list[Message]] = [[] for _ in consumers]
    done = asyncio.Event()

    async def run(i: int, consumer: Consumer) -> None:
        while not done.is_set():
            for m in await consumer.fetch(max_messages=50, timeout=0.3):
                got[i].append(m)
                if acks[i]:
                    await consumer.ack(m)
            if sum(map(len, got)) >= count:
                done.set()

    try:
        async with asyncio.timeout(within):
            await asyncio.gather(*(run(i, c) for i, c in enumerate(consumers)))
    except TimeoutError:
        pass  # callers assert on what arrived, which gives the better message
    return got


def values(messages: Sequence[Message]) -> list[str]:
    return [m.value.decode() for m in messages]


def by_key(messages: Sequence[Message]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for m in messages:
        out[m.key].append(m.value.decode())
    return out


async def publish_spread(bus: Bus, keys: int, per_key: int) -> dict[str, list[str]]:
    """Publish per_key messages for each of `keys` keys, interleaved; return them per key."""
    sent: dict[str, list[str]] = defaultdict(list)
    for i in range(per_key):
        for k in range(keys):
            key, value = f"agg-{k}", f"agg-{k}:{i}"
            await bus.publish(TOPIC, key, value.encode())
            sent[key].append(value)
    return sent


class BusContract:
    """Behaviour every backend must show; subclasses provide the `bus` fixture."""

    # Whether Message.redeliveries counts deliveries across members (Kafka cannot know).
    counts_redeliveries = False

    @pytest_asyncio.fixture
    async def members(self, bus: Bus) -> AsyncIterator[StartMembers]:
        """Start group members concurrently (as workers would); stop them all at teardown."""
        started: list[Consumer] = []

        async def start(
            group: str, *names: str, topics: Sequence[str] = (TOPIC,)
        ) -> list[Consumer]:
            consumers = [bus.consumer(group, topics, name) for name in names]
            started.extend(consumers)
            # Bounded, so a stuck group join fails the test instead of hanging the run.
            async with asyncio.timeout(30):
                await asyncio.gather(*(c.start() for c in consumers))
            return consumers

        yield start
        async with asyncio.timeout(30):
            for consumer in started:
                await consumer.stop()

    async def test_ping(self, bus: Bus) -> None:
        await bus.ping()
        await bus.stop()
        with pytest.raises(RuntimeError):  # a stopped bus has no connection left
            await bus.ping()

    async def test_publishing_to_an_unknown_topic_is_refused(self, bus: Bus) -> None:
        # A typo must not silently create a topic with some default partition count.
        with pytest.raises(LookupError):
            await bus.publish("never.created", "k", b"v")

    async def test_message_arrives_intact(self, bus: Bus, members: StartMembers) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 3)])
        (consumer,) = await members("g", "m1")
        sent = [
            ("app-1", b"\x00binary\xff", {"type": "AppCreated", "trace": "t-1"}),
            ("app-2", b"{}", {}),
            ("app-3", "ünïcode".encode(), {"type": "AppDeleted"}),
        ]
        for key, value, headers in sent:
            await bus.publish(TOPIC, key, value, headers)

        (got,) = await collect([consumer], len(sent))

        assert sorted((m.key, m.value, m.headers) for m in got) == sorted(sent)
        for m in got:
            assert m.topic == TOPIC
            assert m.partition == partition_for(m.key, 3)
            assert m.redeliveries == 0

    async def test_same_key_arrives_in_publish_order(self, bus: Bus, members: StartMembers) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 4)])
        (consumer,) = await members("g", "m1")
        sent = await publish_spread(bus, keys=5, per_key=20)

        (got,) = await collect([consumer], 100)

        assert by_key(got) == sent

    async def test_publish_many_keeps_key_order_across_topics(
        self, bus: Bus, members: StartMembers
    ) -> None:
        other = TOPIC + ".work"
        await bus.ensure_topics([TopicSpec(TOPIC, 4), TopicSpec(other, 2)])
        (consumer,) = await members("g", "m1", topics=(TOPIC, other))
        batch = [OutgoingMessage(t, f"k{i % 5}", f"{t}:{i}".encode(), {"n": str(i)})
                 for i in range(40) for t in (TOPIC, other)]
        await bus.publish_many(batch)

        (got,) = await collect([consumer], len(batch))

        for topic, partitions in ((TOPIC, 4), (other, 2)):
            mine = [m for m in got if m.topic == topic]
            assert all(m.partition == partition_for(m.key, partitions) for m in mine)
            assert by_key(mine) == {
                k: [m.value.decode() for m in batch if m.topic == topic and m.key == k]
                for k in {m.key for m in batch}}

    async def test_a_member_owns_only_what_it_still_holds(
        self, bus: Bus, members: StartMembers
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 2)])
        (first,) = await members("g", "first")
        await publish_spread(bus, keys=6, per_key=1)
        (held,) = await collect([first], 6, ack=False)
        assert all([await first.owns(m) for m in held])
        await first.stop()  # its partitions go to the next member
        (second,) = await members("g", "second")
        (again,) = await collect([second], 6)
        assert all([await second.owns(m) for m in again])
        assert not any([await first.owns(m) for m in held])
        # The new owner's deliveries carry a later fence: a store can refuse the old one's.
        assert min(m.fence for m in again) > max(m.fence for m in held)

    async def test_one_member_per_message_and_every_group_gets_all(
        self, bus: Bus, members: StartMembers
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 4)])
        (a1, a2), (b1,) = await asyncio.gather(
            members("group-a", "a1", "a2"), members("group-b", "b1")
        )
        sent = await publish_spread(bus, keys=10, per_key=3)
        everything = sorted(v for vs in sent.values() for v in vs)

        got_a1, got_a2 = await collect([a1, a2], 30)
        (got_b,) = await collect([b1], 30)

        assert not set(values(got_a1)) & set(values(got_a2)), "a message reached both members"
        assert sorted(values(got_a1) + values(got_a2)) == everything
        assert sorted(values(got_b)) == everything

    async def test_unacked_messages_of_a_stopped_member_go_to_another(
        self, bus: Bus, members: StartMembers
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 4)])
        doomed, survivor = await members("g", "doomed", "survivor")
        await publish_spread(bus, keys=12, per_key=2)

        lost, kept = await collect([doomed, survivor], 24, ack=[False, True])
        assert lost and kept, "both members should own partitions"
        await doomed.stop()  # dies without acking what it fetched

        (again,) = await collect([survivor], len(lost))

        assert sorted(values(again)) == sorted(values(lost))
        assert not set(values(again)) & set(values(kept)), "acked messages came back"
        if self.counts_redeliveries:
            assert all(m.redeliveries >= 1 for m in again)

    @pytest.mark.parametrize("together", [False, True], ids=["one_by_one", "ack_many"])
    async def test_acked_messages_are_not_redelivered_after_restart(
        self, bus: Bus, members: StartMembers, together: bool
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 2)])
        (first,) = await members("g", "worker-1")
        for i in range(10):
            await bus.publish(TOPIC, "agg", f"v{i}".encode())
        (got,) = await collect([first], 10, ack=False)
        assert values(got) == [f"v{i}" for i in range(10)]
        if together:  # a partition's batch, as the runtime acknowledges it
            await first.ack_many(got[:5])
        else:
            for m in got[:5]:
                await first.ack(m)
        await first.stop()

        (restarted,) = await members("g", "worker-1")
        await bus.publish(TOPIC, "agg", b"v10")
        (again,) = await collect([restarted], 6)
        extra = await restarted.fetch(timeout=0.5)

        assert values(again) + values(extra) == [f"v{i}" for i in range(5, 11)]

    async def test_members_split_partitions_and_keep_key_order(
        self, bus: Bus, members: StartMembers
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 4)])
        m1, m2 = await members("g", "m1", "m2")
        sent = await publish_spread(bus, keys=8, per_key=10)

        got1, got2 = await collect([m1, m2], 80)

        assert got1 and got2, "both members should get some partitions"
        keys1, keys2 = by_key(got1), by_key(got2)
        assert not keys1.keys() & keys2.keys(), "a key was read by two members"
        assert {**keys1, **keys2} == sent
        owned1 = {m.partition for m in got1}
        assert owned1.isdisjoint({m.partition for m in got2})

    async def test_group_state_shows_owners_and_the_oldest_unacknowledged(
        self, bus: Bus, members: StartMembers
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 4)])
        assert await bus.topic_partitions([TOPIC, "never.created"]) == {TOPIC: 4}
        m1, m2 = await members("g", "m1", "m2")
        state = await bus.group_state("g", [TOPIC])
        assert set(state.members) == {"m1", "m2"}
        assert sorted(p for parts in state.members.values() for p in parts) == [
            (TOPIC, p) for p in range(4)]
        assert state.oldest_unacked is None  # nothing published

        before = datetime.now(UTC) - timedelta(seconds=1)
        await publish_spread(bus, keys=8, per_key=2)
        got = await collect([m1, m2], 16, ack=False)
        oldest = (await bus.group_state("g", [TOPIC])).oldest_unacked
        assert oldest is not None and before <= oldest <= datetime.now(UTC)
        for consumer, messages in zip((m1, m2), got, strict=True):
            for m in messages:
                await consumer.ack(m)
        assert (await bus.group_state("g", [TOPIC])).oldest_unacked is None

    async def test_a_topic_grows(self, bus: Bus) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 2)])
        await bus.add_partitions(TOPIC, 5)
        assert await bus.topic_partitions([TOPIC]) == {TOPIC: 5}

    async def test_a_topic_never_shrinks_and_an_unknown_one_never_appears(
        self, bus: Bus
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 2)])
        with pytest.raises(ValueError, match="cannot shrink"):
            await bus.add_partitions(TOPIC, 1)
        await bus.add_partitions(TOPIC, 2)  # already there: nothing to do
        with pytest.raises(LookupError):
            await bus.add_partitions("never.created", 3)
        assert await bus.topic_partitions([TOPIC, "never.created"]) == {TOPIC: 2}


class MembersInOtherProcessesContract(BusContract):
    """A bus whose group members can run in other OS processes, and so die there."""

    def member_process_config(self, bus: Any) -> dict[str, Any]:
        """How MEMBER_PROCESS builds this backend's bus: backend, address, prefix, ..."""
        raise NotImplementedError

    async def test_unacked_messages_of_a_killed_member_go_to_another(
        self, bus: Any, members: StartMembers
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 2)])
        cfg = self.member_process_config(bus) | {
            "group": "g",
            "topic": TOPIC,
            "member": "doomed",
            "expect": 6,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MEMBER_PROCESS,
            json.dumps(cfg),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(30):
                assert (await proc.stdout.readline()).strip() == b"ready"
                await publish_spread(bus, keys=3, per_key=2)
                held = json.loads(await proc.stdout.readline())
            assert len(held) == 6
        finally:
            proc.send_signal(signal.SIGKILL)  # no clean leave: leases / session must expire
            await proc.wait()

        (survivor,) = await members("g", "survivor")
        (got,) = await collect([survivor], 6, within=30)

        assert sorted(values(got)) == sorted(held)
        if self.counts_redeliveries:
            assert all(m.redeliveries >= 1 for m in got)


class TrimsConsumedContract(BusContract):
    """A bus that drops what every group acknowledged itself (`trim_consumed`)."""

    async def test_trim_keeps_what_any_group_still_needs(self, bus: Bus) -> None:
        await bus.ensure_topics([TopicSpec("trim", 1), TopicSpec("trim.dlq", 1)])
        for i in range(10):
            await bus.publish("trim", "k", str(i).encode())
        await bus.publish("trim.dlq", "k", b"parked")
        fast, slow = bus.consumer("fast", ["trim"], "f1"), bus.consumer("slow", ["trim"], "s1")
        await fast.start()
        await slow.start()
        try:
            got = await fast.fetch(max_messages=10, timeout=2)
            for message in got[:6]:
                await fast.ack(message)
            assert await bus.trim_consumed() == 0  # "slow" has read nothing yet
            for message in await slow.fetch(max_messages=10, timeout=2):
                await slow.ack(message)
            # everything "fast" acked goes; its 4 pending stay, as does the dead letter
            assert await bus.trim_consumed() == 6
            for message in got[6:]:
                await fast.ack(message)
            assert await bus.trim_consumed() == 4
            assert await bus.trim_consumed() == 0
        finally:
            await fast.stop()
            await slow.stop()
        # Nothing was lost that a group still needed: a new group finds only the dead letter.
        late = bus.consumer("late", ["trim", "trim.dlq"], "l1")
        await late.start()
        try:
            assert values(await late.fetch(timeout=0.2)) == ["parked"]
        finally:
            await late.stop()
