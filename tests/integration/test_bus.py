"""The event bus contract: one suite, run against every backend (FastStream-style mixin).

Each test uses its own topic prefix, so tests share one Redis / one broker without seeing
each other's topics, groups or leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
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
from adapters.bus.kafka import KafkaBus
from adapters.bus.memory import InMemoryBus
from adapters.bus.redis_streams import RedisStreamsBus

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


# A member that fetches without acking, reports whether it owns what it fetched, then (after
# the test stalled and resumed it) reports again when asked.
STALLED_MEMBER = """
import asyncio, json, sys

async def main():
    from adapters.bus.redis_streams import RedisStreamsBus
    bus = RedisStreamsBus("{address}", prefix="{prefix}", lease_seconds=float(sys.argv[1]))
    await bus.start()
    consumer = bus.consumer("g", ["events.test"], "stalled")
    await consumer.start()
    print("ready", flush=True)
    got = []
    while len(got) < 6:
        got += await consumer.fetch(timeout=0.5)
    print(json.dumps([await consumer.owns(m) for m in got]), flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()
    print(json.dumps([await consumer.owns(m) for m in got]), flush=True)

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
    # Whether a group member can run in another OS process (and so be SIGKILLed there).
    members_in_other_processes = True

    def member_process_config(self, bus: Any) -> dict[str, Any]:
        raise NotImplementedError

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

    async def test_unacked_messages_of_a_killed_member_go_to_another(
        self, bus: Any, members: StartMembers
    ) -> None:
        if not self.members_in_other_processes:
            pytest.skip("needs a group member in another process; this bus lives in one process")
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

    async def test_acked_messages_are_not_redelivered_after_restart(
        self, bus: Bus, members: StartMembers
    ) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 2)])
        (first,) = await members("g", "worker-1")
        for i in range(10):
            await bus.publish(TOPIC, "agg", f"v{i}".encode())
        (got,) = await collect([first], 10, ack=False)
        assert values(got) == [f"v{i}" for i in range(10)]
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


class TestRedisStreamsBus(BusContract):
    counts_redeliveries = True
    # Short leases keep the crash test quick; production default is 5 s.
    lease_seconds = 2.0

    @pytest_asyncio.fixture
    async def bus(self, redis_url: str) -> AsyncIterator[RedisStreamsBus]:
        bus = RedisStreamsBus(
            redis_url, prefix=f"t{uuid.uuid4().hex[:8]}.", lease_seconds=self.lease_seconds
        )
        await bus.start()
        yield bus
        await bus.stop()

    def member_process_config(self, bus: Any) -> dict[str, Any]:
        return {
            "backend": "redis",
            "address": bus.url,
            "prefix": bus.prefix,
            "lease": self.lease_seconds,
        }

    async def test_ping(self, bus: RedisStreamsBus) -> None:
        await bus.ping()

    async def test_a_topic_grows_and_never_shrinks(self, bus: RedisStreamsBus) -> None:
        await bus.ensure_topics([TopicSpec(TOPIC, 2)])
        await bus.add_partitions(TOPIC, 5)
        assert await bus.topic_partitions([TOPIC]) == {TOPIC: 5}
        with pytest.raises(ValueError, match="cannot shrink"):
            await bus.add_partitions(TOPIC, 3)

    async def test_a_member_stalled_past_its_lease_no_longer_owns_what_it_fetched(
        self, bus: RedisStreamsBus, members: StartMembers
    ) -> None:
        """SIGSTOP a member holding fetched messages past its lease; another member takes
        them over; on SIGCONT the stalled one must see it owns nothing before any effect."""
        await bus.ensure_topics([TopicSpec(TOPIC, 2)])
        script = STALLED_MEMBER.replace("{address}", bus.url).replace("{prefix}", bus.prefix)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(self.lease_seconds), cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
            await publish_spread(bus, keys=6, per_key=1)
            fetched = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            assert fetched == [True] * 6  # it owned all it fetched
            os.kill(proc.pid, signal.SIGSTOP)
            (taker,) = await members("g", "taker")
            (taken,) = await collect([taker], 6, within=self.lease_seconds * 6)
            assert len(taken) == 6
            os.kill(proc.pid, signal.SIGCONT)
            proc.stdin.write(b"check\n")
            owned_after = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            assert owned_after == [False] * 6
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            await proc.wait()

    async def test_trim_keeps_what_any_group_still_needs(self, bus: RedisStreamsBus) -> None:
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
            stream = bus.stream_name("trim", 0)
            assert await bus.client.xlen(stream) == 4
            assert await bus.client.xlen(bus.stream_name("trim.dlq", 0)) == 1
            for message in got[6:]:
                await fast.ack(message)
            assert await bus.trim_consumed() == 4
            assert await bus.client.xlen(stream) == 0
        finally:
            await fast.stop()
            await slow.stop()


@pytest.mark.kafka
class TestKafkaBus(BusContract):
    @pytest_asyncio.fixture
    async def bus(self, kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
        bus = KafkaBus(kafka_bootstrap, prefix=f"t{uuid.uuid4().hex[:8]}.")
        await bus.start()
        yield bus
        await bus.stop()

    def member_process_config(self, bus: Any) -> dict[str, Any]:
        # A short session for the member that gets killed: the survivor waits for it to lapse.
        return {
            "backend": "kafka",
            "address": bus.bootstrap_servers,
            "prefix": bus.prefix,
            "session": 3000,
        }

    async def test_ping(self, bus: KafkaBus) -> None:
        await bus.ping()


class TestInMemoryBus(BusContract):
    """The unit tier's bus: no server, so no server fixtures."""

    counts_redeliveries = True
    members_in_other_processes = False

    @pytest_asyncio.fixture
    async def bus(self) -> AsyncIterator[InMemoryBus]:
        bus = InMemoryBus()
        await bus.start()
        yield bus
        await bus.stop()

    async def test_ping(self, bus: InMemoryBus) -> None:
        await bus.ping()
        await bus.stop()
        with pytest.raises(RuntimeError):
            await bus.ping()

    async def test_trim_keeps_what_any_group_still_needs(self, bus: InMemoryBus) -> None:
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
