"""Kafka backend of the event bus (aiokafka).

Works against real Kafka and against tansu (the test broker), so it avoids what tansu lacks:
no idempotent/transactional producer, no "latest" offsets (only `earliest` resets), topics
pre-created with their partition counts.

Broker outages heal by themselves: aiokafka's producer and consumers reconnect, and a
consumer rejoins its group when the coordinator is back. What this module adds: a publish
fails fast with `BrokerUnavailable` (transient: 503 at the gateway, retried by workers)
instead of queueing for the producer's whole timeout, and aiokafka errors that mean "no
broker answers" but are not marked retriable are raised as `BrokerUnavailable` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (
    BrokerNotAvailableError,
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.structs import OffsetAndMetadata

from adapters.bus.base import GroupState, Message, OutgoingMessage, TopicSpec, partition_for

log = logging.getLogger(__name__)


class BrokerUnavailable(ConnectionError):
    """No Kafka broker answers. A ConnectionError, so adapters/transient.py counts it as
    transient even where aiokafka's own error for the outage is not marked retriable."""


# Non-retriable in aiokafka, yet raised when the broker is gone: a send whose queue never
# drains (KafkaTimeoutError), a broker-side "not available".
_BROKER_GONE: tuple[type[KafkaError], ...] = (
    KafkaTimeoutError, KafkaUnavailableError, BrokerNotAvailableError)


class KafkaBus:
    def __init__(
        self,
        bootstrap_servers: str,
        prefix: str = "eddy.",
        session_timeout_ms: int = 6000,
        replication_factor: int = 1,
        publish_timeout_ms: int = 10_000,
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.prefix = prefix
        self.session_timeout_ms = session_timeout_ms
        # Used only when creating topics; raise it on a multi-broker cluster.
        self.replication_factor = replication_factor
        # Longest a publish waits for its acks (aiokafka's 40 s default would hold a request
        # that long when the broker dies mid-send).
        self.publish_timeout_ms = publish_timeout_ms
        # No fetch (and no work in flight, see KafkaConsumer.working) for this long: the
        # member leaves the group, taken for hung.
        self.max_poll_interval_ms = max_poll_interval_ms
        self._counts: dict[str, int] = {}
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaBus.start() was not called")
        return self._producer

    def topic_name(self, topic: str) -> str:
        return self.prefix + topic

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                acks="all",
                # tansu rejects idempotent producers; effects are made idempotent downstream.
                enable_idempotence=False,
                request_timeout_ms=self.publish_timeout_ms,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # its client may hold connections and tasks
                raise
            self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def ping(self) -> None:
        await self._metadata()

    async def _metadata(self) -> ClusterMetadata:
        try:
            return await self.producer.client.fetch_all_metadata()
        except KafkaError as exc:
            # Its only own error is a bare KafkaError: "no broker answered".
            if type(exc) is KafkaError:
                raise BrokerUnavailable(f"no Kafka broker at {self.bootstrap_servers}") from exc
            raise

    async def trim_consumed(self) -> int:
        # Kafka drops old segments by the topics' retention settings; nothing to do here.
        return 0

    async def ensure_topics(self, topics: Sequence[TopicSpec]) -> None:
        if not topics:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [s for s in topics if self.topic_name(s.name) not in existing]
            if missing:
                reply = await admin.create_topics(
                    [
                        NewTopic(self.topic_name(s.name), s.partitions, self.replication_factor)
                        for s in missing
                    ]
                )
                for name, code, *_ in reply.topic_errors:
                    # Already-exists: another process created it between list and create.
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise for_code(code)(f"creating topic {name}")
            await self._learn_counts(admin, topics)
        finally:
            await admin.close()

    async def _learn_counts(self, admin: AIOKafkaAdminClient, topics: Sequence[TopicSpec]) -> None:
        """Cache the real partition counts (an existing topic keeps its own count)."""
        wanted = {self.topic_name(s.name): s for s in topics}
        deadline = time.monotonic() + 10
        while True:
            described = await admin.describe_topics(list(wanted))
            counts = {t["topic"]: len(t["partitions"]) for t in described if t["partitions"]}
            if len(counts) == len(wanted) or time.monotonic() > deadline:
                break
            # Freshly created topics can take a moment to show up in metadata.
            await asyncio.sleep(0.2)
        for name, spec in wanted.items():
            count = counts.get(name)
            if count is None:
                raise LookupError(f"topic {name} has no partitions after creation")
            if count != spec.partitions:
                log.warning(
                    "topic %s exists with %d partitions, not %d", name, count, spec.partitions
                )
            self._counts[spec.name] = count

    async def topic_partitions(self, topics: Sequence[str]) -> dict[str, int]:
        metadata = await self._metadata()
        found = {t: metadata.partitions_for_topic(self.topic_name(t)) for t in topics}
        return {t: len(parts) for t, parts in found.items() if parts}

    async def add_partitions(self, topic: str, partitions: int) -> None:
        # Checked here, as the other backends do: Kafka itself refuses the current count too.
        current = (await self.topic_partitions([topic])).get(topic)
        if current is None:
            raise LookupError(f"unknown topic {topic!r}: call ensure_topics first")
        if partitions < current:
            raise ValueError(f"topic {topic} has {current} partitions: it cannot shrink")
        if partitions == current:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            reply = await admin.create_partitions(
                {self.topic_name(topic): NewPartitions(total_count=partitions)})
            for name, code, message in reply.topic_errors:
                if code:
                    raise for_code(code)(f"growing topic {name} to {partitions}: {message}")
        finally:
            await admin.close()
        self._counts[topic] = partitions

    async def group_state(self, group: str, topics: Sequence[str]) -> GroupState:
        group_id = self.prefix + group
        counts = await self.topic_partitions(topics)
        parts = [TopicPartition(self.topic_name(t), p) for t, n in counts.items()
                 for p in range(n)]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            described = [m for response in await admin.describe_consumer_groups([group_id])
                         for g in response.groups for m in g[5]]
        finally:
            await admin.close()
        # (member_id, client_id, host, metadata, assignment)
        assigned = {m[0]: [tp for tp in ConsumerProtocolMemberAssignment.decode(m[4])
                           .partitions() if tp in parts] if m[4] else [] for m in described}
        if described and not any(assigned.values()):
            # tansu reports no assignments: derive them as the group leader did (aiokafka's
            # default round-robin assignor; all our members subscribe to the same topics)
            ids = sorted(assigned)
            for i, tp in enumerate(sorted(parts)):
                assigned[ids[i % len(ids)]].append(tp)
        names = {m[0]: _member_name(m[0], m[1]) for m in described}
        members = {names[i]: [(tp.topic.removeprefix(self.prefix), tp.partition) for tp in tps]
                   for i, tps in assigned.items()}
        return GroupState(members, await self._oldest_unread(group_id, parts))

    async def _oldest_unread(self, group_id: str,
                             parts: list[TopicPartition]) -> datetime | None:
        """The oldest timestamp among the records at the group's committed offsets (the
        next ones it reads). The reader names the group to read its offsets but never joins
        it; tansu's wrong end offsets rule out comparing with the log end, so a partition
        read to its end simply has no record there."""
        if not parts:
            return None
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=group_id,
                                  enable_auto_commit=False, auto_offset_reset="earliest")
        await reader.start()
        try:
            reader.assign(parts)
            offsets = {}
            for tp in parts:
                committed = await reader.committed(tp)
                offsets[tp] = committed if committed is not None and committed >= 0 else 0
                reader.seek(tp, offsets[tp])
            batches = await reader.getmany(timeout_ms=1000, max_records=len(parts) * 10)
        finally:
            await reader.stop()
        times = [records[0].timestamp for tp, records in batches.items()
                 if records and records[0].offset == offsets[tp]]
        return datetime.fromtimestamp(min(times) / 1000, UTC) if times else None

    async def partition_count(self, topic: str) -> int:
        count = self._counts.get(topic)
        if count is None:
            # Not producer.partitions_for: its metadata request auto-creates missing topics
            # (tansu and default Kafka), with the broker's default partition count.
            metadata = await self._metadata()
            parts = metadata.partitions_for_topic(self.topic_name(topic))
            if not parts:
                raise LookupError(f"unknown topic {topic!r}: call ensure_topics first")
            count = self._counts[topic] = len(parts)
        return count

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        await self.publish_many([OutgoingMessage(topic, key, value, headers or {})])

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        # Explicit partition so Redis and Kafka place a key on the same partition number.
        placed = [(TopicPartition(self.topic_name(m.topic), m.partition if m.partition is not None
                                  else partition_for(m.key, await self.partition_count(m.topic))),
                   m) for m in messages]
        await self._ensure_reachable({tp for tp, _ in placed})
        try:
            # Queue every send first (the producer batches them), then wait for all acks.
            sent = [await self.producer.send(
                tp.topic, m.value, key=m.key.encode(), partition=tp.partition,
                headers=[(k, v.encode()) for k, v in m.headers.items()]) for tp, m in placed]
            await asyncio.gather(*sent)
        except _BROKER_GONE as exc:
            raise BrokerUnavailable(f"Kafka broker unavailable: {exc}") from exc

    async def _ensure_reachable(self, partitions: set[TopicPartition]) -> None:
        """Refuse to queue messages for a leader we cannot connect to. aiokafka would hold
        them (and the caller) for the whole publish timeout, and a caller that gives up
        meanwhile (a client disconnecting) cannot unqueue them: they would be delivered on
        the broker's return although the request failed. Refused here, nothing was sent."""
        client = self.producer.client
        for node in {client.cluster.leader_for_partition(tp) for tp in partitions}:
            # Unknown leader (None / -1): the producer looks it up itself, bounded by its timeout.
            if node is not None and node >= 0 and not await client.ready(node):
                raise BrokerUnavailable(
                    f"Kafka broker {node} unreachable (bootstrap {self.bootstrap_servers})")

    def consumer(self, group: str, topics: Sequence[str], member: str) -> KafkaConsumer:
        return KafkaConsumer(self, group, list(topics), member)


class _Tracking:
    """Delivered offsets of one partition; commits advance over the acked prefix only.

    Kafka stores one offset per partition, so acking message 5 before 3 must not commit 6:
    message 3 would be lost if this member died before acking it.
    """

    def __init__(self, fence: int) -> None:
        self.pending: dict[int, bool] = {}  # offset -> acked, in delivery (= offset) order
        self.committed = -1
        self.fence = fence  # the group generation that assigned us the partition

    def delivered(self, offset: int) -> None:
        self.pending.setdefault(offset, False)

    def acked(self, offset: int) -> int | None:
        """Mark done; return the offset to commit if the committed point moved."""
        if offset not in self.pending:
            return None
        self.pending[offset] = True
        commit = None
        while self.pending:
            first = next(iter(self.pending))
            if not self.pending[first]:
                break
            del self.pending[first]
            commit = first + 1
        if commit is None or commit <= self.committed:
            return None
        self.committed = commit
        return commit


class _Listener(ConsumerRebalanceListener):
    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        # What the last revocation took: its partitions' fences, and the generation then
        self._revoked: dict[TopicPartition, int] = {}
        self._revoked_in = -1

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Unacked messages of these partitions go to the next owner from the committed offset.
        self._revoked_in = self.consumer._generation()
        self._revoked = {}
        for tp in revoked:
            tracking = self.consumer._tracking.pop(tp, None)
            if tracking is not None:
                self._revoked[tp] = tracking.fence

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        generation = self.consumer._generation()
        # A partition we had in the generation just before this one stayed ours throughout
        # (one owner per generation): it keeps its fence, so the rebalance does not stop
        # our work in flight on it. After a gap (we were expelled, say stalled past our
        # session, and others had it meanwhile) it gets a new one.
        kept = self._revoked if self._revoked_in >= 0 and \
            generation == self._revoked_in + 1 else {}
        for tp in assigned:
            self.consumer._tracking[tp] = _Tracking(kept.get(tp, generation))
        self._revoked = {}
        # Also set for an empty assignment (more members than partitions): the join is done.
        self.consumer._joined.set()


class KafkaConsumer:
    """One group member (`member` becomes the Kafka client id)."""

    def __init__(self, bus: KafkaBus, group: str, topics: list[str], member: str) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self.member = member
        self._tracking: dict[TopicPartition, _Tracking] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._joined = asyncio.Event()

    async def start(self) -> None:
        session = self.bus.session_timeout_ms
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bus.bootstrap_servers,
            # Group ids are cluster-wide, so they share the topics' namespace prefix.
            group_id=self.bus.prefix + self.group,
            client_id=self.member,
            enable_auto_commit=False,
            # tansu reports wrong "latest" offsets; a new group reads from the start.
            auto_offset_reset="earliest",
            session_timeout_ms=session,
            heartbeat_interval_ms=max(100, session // 3),
            max_poll_interval_ms=self.bus.max_poll_interval_ms,
            # The broker holds a fetch open until data arrives or this long: aiokafka's 500 ms
            # default puts half a second on every hop of a command's round trip.
            fetch_max_wait_ms=20,
        )
        # Subscribing after start(): subscribed before, aiokafka's start() waits for the first
        # assignment with no limit, and a join can stall (e.g. behind a dead member's session).
        try:
            await consumer.start()  # fails while no broker answers (a transient error)
        except BaseException:
            await consumer.stop()  # else it stays open; the supervisor makes a new one
            raise
        self._consumer = consumer
        consumer.subscribe([self.bus.topic_name(t) for t in self.topics], listener=_Listener(self))
        # Return once the group join assigned us partitions, so callers that start members
        # and then publish see the final split; give up waiting after a dead member's session
        # plus a join (the join goes on in the background and fetch returns [] until then).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * session / 1000 + 2):
                await self._joined.wait()

    async def stop(self) -> None:
        if self._consumer is not None:
            # Leaves the group, so the others rebalance now instead of after the session timeout.
            _leave_even_in_generation_zero(self._consumer)
            await self._consumer.stop()
            self._consumer = None
        self._tracking.clear()

    async def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        batches = await self._consumer.getmany(
            timeout_ms=max(0, int(timeout * 1000)), max_records=max_messages
        )
        out: list[Message] = []
        for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)):
            tracking = self._tracking.get(tp)
            if tracking is None:
                continue  # fetched before it was revoked: its owner reads it again
            topic = tp.topic.removeprefix(self.bus.prefix)
            for record in batches[tp]:
                tracking.delivered(record.offset)
                out.append(
                    Message(
                        topic=topic,
                        partition=tp.partition,
                        key=record.key.decode() if record.key is not None else "",
                        value=record.value if record.value is not None else b"",
                        headers={k: v.decode() for k, v in record.headers},
                        ack_token=(tp, record.offset),
                        fence=tracking.fence,
                    )
                )
        return out

    async def owns(self, message: Message) -> bool:
        # Revocation (on_partitions_revoked) drops the partition's tracking; an assignment
        # after others may have had it comes with a new fence.
        tracking = self._tracking.get(message.ack_token[0])
        return (self._consumer is not None and tracking is not None
                and tracking.fence == message.fence)

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        # aiokafka leaves the group when getmany is not called for max_poll_interval_ms,
        # unless a fetch is under way: work in flight counts as one.
        subscription = getattr(self._consumer, "_subscription", None)
        fetching = getattr(subscription, "fetch_context", None)
        context = fetching() if fetching is not None else contextlib.nullcontext()
        context.__enter__()
        try:
            yield
        finally:
            # Exited as after success: aiokafka's context skips its own exit on an error,
            # which would leave the member counted as fetching for good.
            context.__exit__(None, None, None)

    def _generation(self) -> int:
        """The group generation we are a member of (aiokafka keeps it private; each
        rebalance raises it, so a later owner of a partition has a higher one)."""
        generation = getattr(getattr(self._consumer, "_coordinator", None), "generation", -1)
        return int(generation)  # -1: none (not joined, or expelled)

    async def ack(self, message: Message) -> None:
        await self.ack_many([message])

    async def ack_many(self, messages: Sequence[Message]) -> None:
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        for message in messages:
            tp, offset = message.ack_token
            tracking = self._tracking.get(tp)
            if tracking is None:
                # Partition moved to another member since delivery: it will redeliver from
                # the committed offset (at-least-once).
                continue
            commit = tracking.acked(offset)
            if commit is not None:
                commits[tp] = OffsetAndMetadata(commit, "")
        if not commits:
            return
        try:
            await self._consumer.commit(commits)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("member %s: commit of %s failed: %s", self.member, commits, exc)


def _member_name(member_id: str, client_id: str) -> str:
    """The member's name as Eddy gave it (the client id); tansu reports no client id, but
    its member ids are `<client id>-<uuid>`, as Kafka's are."""
    return client_id or re.sub(r"-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$", "", member_id)


def _leave_even_in_generation_zero(consumer: AIOKafkaConsumer) -> None:
    """Make aiokafka send LeaveGroup on stop when the broker numbers generations from 0.

    aiokafka leaves only if generation > 0; tansu's first generation is 0, so without this a
    stopped member stays in the group until its session expires and the remaining members
    wait that long (plus a join) to get its partitions. Private API, hence the guards: if it
    changes, stop() simply falls back to the session timeout.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    original = getattr(coordinator, "_maybe_leave_group", None)
    if coordinator is None or original is None:
        return

    async def leave() -> None:
        # Runs inside close() after the heartbeat task stopped, so bumping it is harmless.
        if coordinator.generation == 0 and coordinator.member_id:
            coordinator.generation = 1
        await original()

    coordinator._maybe_leave_group = leave


__all__ = ["KafkaBus", "KafkaConsumer"]
