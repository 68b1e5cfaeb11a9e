"""In-process backend of the event bus, for the fast unit tier (no servers).

It keeps the semantics of the real backends so handler tests mean the same thing: topics
exist only once `ensure_topics` created them, keys go to partitions by `partition_for`,
every consumer group gets every message, the live members of one group split the partitions
(rebalanced whenever a member starts or stops), and delivery is at-least-once: what a member
fetched but did not acknowledge goes again to whoever owns the partition next.

State lives in the bus object (like the data on a server), so it survives stop()/start() of
the bus and of its consumers, but not the process: members in other processes cannot join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.bus.base import GroupState, Message, OutgoingMessage, TopicSpec, partition_for

log = logging.getLogger(__name__)

_TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class _Entry:
    key: str
    value: bytes
    headers: dict[str, str]
    published_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _Log:
    """One partition: entries by offset; `base` is the offset of the first one kept."""

    entries: list[_Entry] = field(default_factory=list)
    base: int = 0

    @property
    def end(self) -> int:
        return self.base + len(self.entries)

    def trim(self, floor: int) -> int:
        """Drop the entries below offset `floor`; return how many went."""
        count = max(0, min(floor, self.end) - self.base)
        del self.entries[:count]
        self.base += count
        return count


@dataclass
class _Cursor:
    """One group's progress in one partition."""

    next: int  # first offset never delivered to the group
    owner: str | None = None
    # Delivered but not acknowledged: offset -> number of deliveries so far.
    pending: dict[int, int] = field(default_factory=dict)
    # Pending offsets the current owner has not been given yet (left by a previous owner).
    redo: deque[int] = field(default_factory=deque)
    epoch: int = 0  # raised on every change of owner: the fence of its deliveries

    def hand_to(self, owner: str | None) -> None:
        if owner != self.owner:
            self.owner = owner
            self.epoch += 1
            # The previous owner may never ack what it holds: the new one gets it again.
            self.redo = deque(sorted(self.pending))

    @property
    def floor(self) -> int:
        """Lowest offset this group may still need."""
        return min(self.pending, default=self.next)


@dataclass
class _Group:
    members: dict[str, InMemoryConsumer] = field(default_factory=dict)  # live ones
    cursors: dict[_TopicPartition, _Cursor] = field(default_factory=dict)


class InMemoryBus:
    def __init__(self) -> None:
        self._topics: dict[str, list[_Log]] = {}
        self._groups: dict[str, _Group] = {}
        self._running = False
        # Signalled on every change a waiting fetch may care about (new message, new owner,
        # stopped member); fetch waits on it instead of polling.
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        self._running = False

    async def ping(self) -> None:
        self._check_running()

    def _check_running(self) -> None:
        # Like the real backends, whose client exists only between start() and stop().
        if not self._running:
            raise RuntimeError("InMemoryBus.start() was not called")

    async def ensure_topics(self, topics: Sequence[TopicSpec]) -> None:
        self._check_running()
        for spec in topics:
            existing = self._topics.get(spec.name)
            if existing is None:
                self._topics[spec.name] = [_Log() for _ in range(spec.partitions)]
            elif len(existing) != spec.partitions:
                # Like Kafka: an existing topic keeps its count (changing it would move keys).
                log.warning(
                    "topic %s exists with %d partitions, not %d",
                    spec.name,
                    len(existing),
                    spec.partitions,
                )

    async def topic_partitions(self, topics: Sequence[str]) -> dict[str, int]:
        return {t: len(self._topics[t]) for t in topics if t in self._topics}

    async def add_partitions(self, topic: str, partitions: int) -> None:
        logs = self._topics.get(topic)
        if logs is None:
            raise LookupError(f"unknown topic {topic!r}: call ensure_topics first")
        if partitions < len(logs):
            raise ValueError(f"topic {topic} has {len(logs)} partitions: it cannot shrink")
        logs += [_Log() for _ in range(partitions - len(logs))]

    async def group_state(self, group: str, topics: Sequence[str]) -> GroupState:
        state = self._groups.get(group)
        if state is None:
            return GroupState({}, None)
        members: dict[str, list[tuple[str, int]]] = {m: [] for m in sorted(state.members)}
        oldest: datetime | None = None
        for (topic, partition), cursor in sorted(state.cursors.items()):
            if topic not in topics:
                continue
            if cursor.owner is not None:
                members.setdefault(cursor.owner, []).append((topic, partition))
            entries = self._topics[topic][partition]
            first = min([*cursor.pending, cursor.next]) if cursor.pending else cursor.next
            if first < entries.end:
                at = entries.entries[first - entries.base].published_at
                oldest = at if oldest is None else min(oldest, at)
        return GroupState(members, oldest)

    def partition_count(self, topic: str) -> int:
        try:
            return len(self._topics[topic])
        except KeyError:
            raise LookupError(f"unknown topic {topic!r}: call ensure_topics first") from None

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self._check_running()
        await self._append(topic, partition_for(key, self.partition_count(topic)), key, value,
                           headers)

    async def _append(self, topic: str, partition: int, key: str, value: bytes,
                      headers: dict[str, str] | None) -> None:
        # Copies, so the caller mutating its dict later does not change the stored message.
        entry = _Entry(key, bytes(value), dict(headers or {}))
        self._topics[topic][partition].entries.append(entry)
        async with self._changed:
            self._changed.notify_all()

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        self._check_running()
        for m in messages:
            partition = (m.partition if m.partition is not None
                         else partition_for(m.key, self.partition_count(m.topic)))
            await self._append(m.topic, partition, m.key, m.value, m.headers)

    def consumer(self, group: str, topics: Sequence[str], member: str) -> InMemoryConsumer:
        return InMemoryConsumer(self, group, list(topics), member)

    async def trim_consumed(self) -> int:
        """Cut each partition below what all its groups still need; a partition no group
        reads (a dead-letter topic) is kept whole for inspection, as on Redis."""
        self._check_running()
        removed = 0
        for name, logs in self._topics.items():
            for partition, entries in enumerate(logs):
                cursors = [
                    g.cursors[(name, partition)]
                    for g in self._groups.values()
                    if (name, partition) in g.cursors
                ]
                if cursors:
                    removed += entries.trim(min(c.floor for c in cursors))
        return removed

    # used by the consumers -------------------------------------------------------------

    def _join(self, consumer: InMemoryConsumer) -> _Group:
        for topic in consumer.topics:
            self.partition_count(topic)  # unknown topic: LookupError before joining
        group = self._groups.setdefault(consumer.group, _Group())
        live = group.members.get(consumer.member)
        if live is not None and live is not consumer:
            raise ValueError(f"member {consumer.member!r} of group {consumer.group!r} is running")
        for topic in consumer.topics:
            for partition, entries in enumerate(self._topics[topic]):
                # A new group reads from the oldest message still kept ("earliest").
                group.cursors.setdefault((topic, partition), _Cursor(next=entries.base))
        group.members[consumer.member] = consumer
        self._rebalance(group)
        return group

    def _leave(self, consumer: InMemoryConsumer) -> None:
        group = self._groups[consumer.group]
        if group.members.get(consumer.member) is consumer:
            del group.members[consumer.member]
            self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Give each partition to the subscribed live member holding the fewest so far.

        Deterministic (members in name order) and balanced; partitions with fewer candidate
        members go first, so members of one group subscribing to different topics still get
        even shares. Not sticky: like Kafka's eager rebalance, a moved partition's
        unacknowledged messages are delivered again by its new owner.
        """
        load = dict.fromkeys(sorted(group.members), 0)
        candidates = {
            tp: [m for m in load if tp[0] in group.members[m].topics] for tp in group.cursors
        }
        for tp in sorted(candidates, key=lambda tp: (len(candidates[tp]), tp)):
            owner = min(candidates[tp], key=lambda m: load[m], default=None)
            if owner is not None:
                load[owner] += 1
            group.cursors[tp].hand_to(owner)

    def _take(self, group: _Group, member: str, limit: int) -> list[Message]:
        """Up to `limit` messages of `member`'s partitions, in partition order; left-overs of
        a previous owner first, as they are older than anything not yet delivered."""
        out: list[Message] = []
        for (topic, partition), cursor in sorted(group.cursors.items()):
            if cursor.owner != member:
                continue
            entries = self._topics[topic][partition]
            while cursor.redo and len(out) < limit:
                offset = cursor.redo.popleft()
                if offset in cursor.pending:  # else acked meanwhile (e.g. by the old owner)
                    out.append(self._deliver(cursor, topic, partition, entries, offset))
            while cursor.next < entries.end and len(out) < limit:
                out.append(self._deliver(cursor, topic, partition, entries, cursor.next))
                cursor.next += 1
        return out

    @staticmethod
    def _deliver(
        cursor: _Cursor, topic: str, partition: int, entries: _Log, offset: int
    ) -> Message:
        deliveries = cursor.pending.get(offset, 0) + 1
        cursor.pending[offset] = deliveries
        entry = entries.entries[offset - entries.base]
        return Message(
            topic=topic,
            partition=partition,
            key=entry.key,
            value=entry.value,
            headers=dict(entry.headers),
            ack_token=(topic, partition, offset),
            redeliveries=deliveries - 1,
            fence=cursor.epoch,
        )


class InMemoryConsumer:
    """One group member. `member` must be unique among the live members of its group."""

    def __init__(self, bus: InMemoryBus, group: str, topics: list[str], member: str) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self.member = member
        self._group: _Group | None = None

    async def start(self) -> None:
        self.bus._check_running()
        self._group = self.bus._join(self)
        async with self.bus._changed:
            self.bus._changed.notify_all()  # partitions may have moved to waiting members

    async def stop(self) -> None:
        if self._group is None:
            return
        self._group = None
        self.bus._leave(self)
        async with self.bus._changed:
            self.bus._changed.notify_all()  # wakes our own fetch too, and the new owners'

    async def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        if self._group is None:
            raise RuntimeError("consumer not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        changed = self.bus._changed
        async with changed:
            while True:
                if self._group is None:  # stopped while waiting
                    return []
                out = self.bus._take(self._group, self.member, max_messages)
                remaining = deadline - loop.time()
                if out or remaining <= 0:
                    return out
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await changed.wait()

    async def owns(self, message: Message) -> bool:
        topic, partition, _ = message.ack_token
        group = self.bus._groups.get(self.group)
        cursor = group.cursors.get((topic, partition)) if group is not None else None
        return (self._group is not None and cursor is not None and cursor.owner == self.member
                and cursor.epoch == message.fence)

    def working(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # nothing expires here

    async def ack(self, message: Message) -> None:
        # Group-wide, like XACK: also valid after the partition moved to another member.
        topic, partition, offset = message.ack_token
        group = self.bus._groups.get(self.group)
        cursor = group.cursors.get((topic, partition)) if group is not None else None
        if cursor is not None:
            cursor.pending.pop(offset, None)

    async def ack_many(self, messages: Sequence[Message]) -> None:
        for message in messages:
            await self.ack(message)


__all__ = ["InMemoryBus", "InMemoryConsumer"]
