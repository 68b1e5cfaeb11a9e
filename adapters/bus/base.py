"""The event bus interface: partitioned topics, consumer groups, at-least-once delivery.

Both backends (Redis Streams, Kafka) implement it; handler code never sees which one runs.
A message is keyed (by aggregate id): one key always lands on one partition, and a partition
is consumed by one member of a group at a time, so one key's messages arrive in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # `partition_for(key, <the topic's count>)` when the caller computed it already (the
    # relay numbers each partition's messages); the bus computes it otherwise
    partition: int | None = None


@dataclass
class Message:
    # The logical topic name, as given to publish/consumer (without the bus's prefix).
    topic: str
    partition: int
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # Backend bookkeeping needed to acknowledge this message (stream id / offset).
    ack_token: Any = None
    # How many times this message was delivered before (0 on first delivery) when known.
    redeliveries: int = 0
    # The ownership generation of its partition when it was delivered: a member that takes
    # a partition over delivers with a higher one than any earlier owner did, so an effect
    # stamped with it can be refused to a stale member (see workers/ownership.py).
    fence: int = 0


@dataclass(frozen=True)
class GroupState:
    """A consumer group as the broker sees it."""

    # live member -> the (topic, partition)s it owns now
    members: dict[str, list[tuple[str, int]]]
    # publish time of the oldest message of its topics the group has not acknowledged
    # (delivered and pending, or not yet delivered); None when it has acknowledged all
    oldest_unacked: datetime | None


class Consumer(Protocol):
    """One member of a consumer group, reading some partitions of some topics."""

    async def start(self) -> None: ...

    async def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        """Next messages of the partitions this member owns, in partition order.

        Returns an empty list after `timeout` seconds with nothing to read. Messages that a
        dead member left unacknowledged are delivered again to whichever member owns the
        partition now.
        """
        ...

    async def ack(self, message: Message) -> None:
        """Mark the message done for the group; it will not be delivered again."""
        ...

    async def ack_many(self, messages: Sequence[Message]) -> None:
        """`ack` of each of the messages (one partition's, in order), in one round trip."""
        ...

    async def owns(self, message: Message) -> bool:
        """Whether this member still owns the message's partition in the generation it was
        delivered in (`message.fence`), confirmed recently enough that no other member can
        have taken it over. Called before each effect: a member that was stalled past its
        lease stops instead of racing the new owner."""
        ...

    def working(self) -> AbstractContextManager[None]:
        """Held while a delivered message is being handled: the member keeps its partitions
        (renews its leases) without fetching. Without work in flight, a member that stops
        fetching for long is taken for hung and gives its partitions up."""
        ...

    async def stop(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure_topics(self, topics: Sequence[TopicSpec]) -> None:
        """Create the topics (with their partition counts) if missing."""
        ...

    async def topic_partitions(self, topics: Sequence[str]) -> dict[str, int]:
        """The partition counts of those of these topics that exist."""
        ...

    async def add_partitions(self, topic: str, partitions: int) -> None:
        """Grow an existing topic to `partitions`. Keys then map to other partitions, so
        publishers and members must restart to see the new count (`eddy topics ensure`)."""
        ...

    async def group_state(self, group: str, topics: Sequence[str]) -> GroupState:
        """Who in the group owns which partitions now, and its oldest unacknowledged message."""
        ...

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Durably append the message to the key's partition (returns once stored)."""
        ...

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        """Append all messages, pipelined, each to its key's partition in the given order;
        returns once all are stored."""
        ...

    def consumer(self, group: str, topics: Sequence[str], member: str) -> Consumer:
        """A group member; several members of one group split the partitions between them."""
        ...

    async def ping(self) -> None:
        """Raise if the backend cannot be reached."""
        ...

    async def trim_consumed(self) -> int:
        """Drop messages every consumer group of a topic has acknowledged (topics are a
        transport; the event store is the record). Returns how many were dropped."""
        ...


def partition_for(key: str, partitions: int) -> int:
    """Stable key → partition mapping (murmur2, as Kafka's default partitioner)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash, so both backends place a key on the same partition number."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (
            (data[i4 + 0] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = (k * m) & 0xFFFFFFFF
        k ^= (k % 0x100000000) >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra >= 3:
        h ^= (data[(length & ~3) + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[(length & ~3) + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[length & ~3] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= (h % 0x100000000) >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= (h % 0x100000000) >> 15
    return h
