"""Redis Streams backend of the event bus.

Layout: topic `t` with N partitions is N streams `{prefix}t.0 … {prefix}t.{N-1}`; the partition
counts live in the hash `{prefix}_meta.topics` so every publisher and consumer agrees on them.

Redis consumer groups alone let every member read every stream, which would break per-key
order. So members also hold leases: one Redis key per (group, partition) whose value is the
owning member, with a TTL renewed by a background heartbeat. Only the lease holder reads the
partition. Live members are a sorted set per group (score = expiry); each member's fair share
is computed from that set, extras are released and free partitions taken, much like a Kafka
group rebalance but without a coordinator. Each take of a lease increments the partition's
epoch, the fence its messages are delivered with (Kafka's group generation plays that role).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from adapters.bus.base import GroupState, Message, OutgoingMessage, TopicSpec, partition_for
from adapters.redis_client import redis_client

log = logging.getLogger(__name__)

# XADD each message to its stream, in order. KEYS: the streams; ARGV: key, value and headers
# of each. One command for a whole batch: redis-py packs one command and parses one reply
# instead of one per message, which was most of a relayed event's CPU.
_PUBLISH = """
for i = 1, #KEYS do
  local a = i * 3
  redis.call('XADD', KEYS[i], '*', 'key', ARGV[a - 2], 'value', ARGV[a - 1], 'headers', ARGV[a])
end
return #KEYS
"""

# A member's round, in one call: refresh our entry in the member set (score = expiry in
# server time, so clocks of the member hosts do not matter), drop expired members, and extend
# the leases we still hold. KEYS: the member set, then the n lease keys, then their n epoch
# keys; ARGV: member, ttl, then the epoch we hold each lease at. Returns the live members and
# 1/0 per lease (0 = lost it). A lease that lapsed while Redis was away (or a round was late)
# and that nobody took since (its epoch is still ours: every take increments it) is ours again
# with the same epoch, so a Redis restart does not fence off, and pay again for, the work in
# flight.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
local held = {}
local n = (#KEYS - 1) / 2
for i = 1, n do
  local k = KEYS[1 + i]
  local v = redis.call('GET', k)
  if v == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    held[i] = 1
  elseif v == false and redis.call('GET', KEYS[1 + n + i]) == ARGV[2 + i] then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return {redis.call('ZRANGE', KEYS[1], 0, -1), held}
"""

# Take up to ARGV[3] free leases (or ones already ours, e.g. after a restart). KEYS: the n
# lease keys, then their n epoch keys. Per lease: its new epoch if taken, else 0.
_ACQUIRE = """
local out = {}
local left = tonumber(ARGV[3])
local n = #KEYS / 2
for i = 1, n do
  local k = KEYS[i]
  out[i] = 0
  if left > 0 then
    local v = redis.call('GET', k)
    if v == false or v == ARGV[1] then
      redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
      out[i] = redis.call('INCR', KEYS[n + i])
      left = left - 1
    end
  end
end
return out
"""

_RELEASE = """
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 0
"""


@contextlib.asynccontextmanager
async def _keep_cancellation() -> AsyncIterator[None]:
    """Re-raise a cancellation that redis-py reported as a connection error.

    A cancel landing while redis-py writes a command surfaces as ConnectionError; without
    this, a loop that survives connection errors would swallow its own cancellation.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from exc
        raise


# A member that has not called fetch for this long, with no message in flight, is considered
# hung: it stops renewing its leases so others take its partitions (Kafka's
# max.poll.interval.ms plays the same role). Work in flight renews them however long it runs.
MAX_POLL_INTERVAL = 300.0


@dataclass(frozen=True)
class _Partition:
    topic: str
    partition: int
    stream: str
    lease_key: str


class RedisStreamsBus:
    def __init__(
        self,
        url: str,
        prefix: str = "eddy.",
        partitions: dict[str, int] | None = None,
        lease_seconds: float = 5.0,
        max_poll_interval: float = MAX_POLL_INTERVAL,
        max_connections: int = 200,
    ) -> None:
        self.url = url
        self.max_connections = max_connections
        self.prefix = prefix
        self.lease_seconds = lease_seconds
        self.max_poll_interval = max_poll_interval
        # Fallback partition counts for topics nobody registered with ensure_topics.
        self._default_partitions = dict(partitions or {})
        self._counts: dict[str, int] = {}
        self._client: aioredis.Redis | None = None
        self._publish_script: AsyncScript | None = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisStreamsBus.start() was not called")
        return self._client

    @property
    def topics_key(self) -> str:
        return f"{self.prefix}_meta.topics"

    def stream_name(self, topic: str, partition: int) -> str:
        return f"{self.prefix}{topic}.{partition}"

    async def start(self) -> None:
        if self._client is None:
            # RESP2 pinned: redis-py 8 defaults to RESP3, whose stream replies have other shapes.
            self._client = redis_client(self.url, max_connections=self.max_connections,
                                        protocol=2)
            self._publish_script = self._client.register_script(_PUBLISH)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = self._publish_script = None

    async def ping(self) -> None:
        await self.client.ping()

    async def ensure_topics(self, topics: Sequence[TopicSpec]) -> None:
        if not topics:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for spec in topics:
                pipe.hsetnx(self.topics_key, spec.name, spec.partitions)
            await pipe.execute()
        stored = await self.client.hmget(self.topics_key, [s.name for s in topics])
        for spec, raw in zip(topics, stored, strict=True):
            count = int(raw)
            if count != spec.partitions:
                # Like Kafka: an existing topic keeps its count (changing it would move keys).
                log.warning(
                    "topic %s exists with %d partitions, not %d", spec.name, count, spec.partitions
                )
            self._counts[spec.name] = count

    async def topic_partitions(self, topics: Sequence[str]) -> dict[str, int]:
        if not topics:
            return {}
        stored = await self.client.hmget(self.topics_key, list(topics))
        return {t: int(raw) for t, raw in zip(topics, stored, strict=True) if raw is not None}

    async def add_partitions(self, topic: str, partitions: int) -> None:
        current = (await self.topic_partitions([topic])).get(topic)
        if current is None:
            raise LookupError(f"unknown topic {topic!r}: call ensure_topics first")
        if partitions < current:
            raise ValueError(f"topic {topic} has {current} partitions: it cannot shrink")
        await self.client.hset(self.topics_key, topic, partitions)
        self._counts[topic] = partitions

    async def group_state(self, group: str, topics: Sequence[str]) -> GroupState:
        meta = f"{self.prefix}_meta.group.{group}"
        now_s, now_us = await self.client.time()
        live = await self.client.zrangebyscore(f"{meta}.members", now_s * 1000 + now_us // 1000,
                                               "+inf")
        members: dict[str, list[tuple[str, int]]] = {m.decode(): [] for m in live}
        counts = await self.topic_partitions(topics)
        parts = [(t, p) for t in topics for p in range(counts.get(t, 0))]
        owners = await self.client.mget([f"{meta}.lease.{t}.{p}" for t, p in parts]) if parts \
            else []
        oldest: tuple[int, int] | None = None
        for (topic, partition), owner in zip(parts, owners, strict=True):
            if owner is not None:
                members.setdefault(owner.decode(), []).append((topic, partition))
            first = await self._oldest_unacked(self.stream_name(topic, partition), group)
            if first is not None and (oldest is None or first < oldest):
                oldest = first
        return GroupState(members, None if oldest is None
                          else datetime.fromtimestamp(oldest[0] / 1000, UTC))

    async def _oldest_unacked(self, stream: str, group: str) -> tuple[int, int] | None:
        """The id (its time part is when it was added) of the stream's oldest entry the
        group has not acknowledged: its oldest pending one, else the first not delivered."""
        try:
            groups = await self.client.xinfo_groups(stream)
        except ResponseError:
            return None  # nothing published to this partition yet
        info = next((g for g in groups if g["name"].decode() == group), None)
        if info is None:
            return None
        if info["pending"]:
            oldest = (await self.client.xpending(stream, group))["min"]
            if oldest is not None:  # else acknowledged since XINFO
                return _stream_id(oldest)
        last = _stream_id(info["last-delivered-id"])
        entries = await self.client.xrange(stream, min=f"({last[0]}-{last[1]}", count=1)
        return _stream_id(entries[0][0]) if entries else None

    async def partition_count(self, topic: str) -> int:
        count = self._counts.get(topic)
        if count is None:
            raw = await self.client.hget(self.topics_key, topic)
            if raw is not None:
                count = int(raw)
            elif topic in self._default_partitions:
                count = self._default_partitions[topic]
            else:
                raise LookupError(f"unknown topic {topic!r}: call ensure_topics first")
            self._counts[topic] = count
        return count

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        n = await self.partition_count(topic)
        stream = self.stream_name(topic, partition_for(key, n))
        await self.client.xadd(
            stream, {"key": key, "value": value, "headers": orjson.dumps(headers or {})}
        )

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        streams: list[str] = []
        fields: list[str | bytes | memoryview] = []
        for m in messages:
            partition = (m.partition if m.partition is not None
                         else partition_for(m.key, await self.partition_count(m.topic)))
            streams.append(self.stream_name(m.topic, partition))
            # A memoryview is sent as it is; redis-py copies bytes into its growing buffer.
            fields += (m.key, memoryview(m.value), orjson.dumps(m.headers))
        if self._publish_script is None:
            raise RuntimeError("RedisStreamsBus.start() was not called")
        await self._publish_script(keys=streams, args=fields)

    def consumer(self, group: str, topics: Sequence[str], member: str) -> RedisStreamsConsumer:
        return RedisStreamsConsumer(self, group, list(topics), member)

    async def trim_consumed(self) -> int:
        """Streams never shrink on their own: cut each below what all its groups still need,
        their oldest pending entry or, with none pending, past their last delivered one.
        A stream no group reads (a dead-letter topic) is kept whole for inspection."""
        removed = 0
        for raw_topic, raw_count in (await self.client.hgetall(self.topics_key)).items():
            for partition in range(int(raw_count)):
                stream = self.stream_name(raw_topic.decode(), partition)
                try:
                    groups = await self.client.xinfo_groups(stream)
                except ResponseError:
                    continue  # nothing published to this partition yet
                if not groups:
                    continue
                floors = []
                for group in groups:
                    pending = await self.client.xpending(stream, group["name"])
                    floors.append(_stream_id(pending["min"]) if pending["pending"]
                                  else _after(_stream_id(group["last-delivered-id"])))
                floor = min(floors)
                if floor > (0, 0):
                    removed += await self.client.xtrim(stream, minid=f"{floor[0]}-{floor[1]}",
                                                       approximate=False)
        return removed


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    ms, _, seq = (raw.decode() if isinstance(raw, bytes) else raw).partition("-")
    return int(ms), int(seq or 0)


def _after(entry: tuple[int, int]) -> tuple[int, int]:
    return (0, 0) if entry == (0, 0) else (entry[0], entry[1] + 1)


class RedisStreamsConsumer:
    """One group member. `member` must be unique among the live members of its group."""

    def __init__(self, bus: RedisStreamsBus, group: str, topics: list[str], member: str) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self.member = member
        self._lease_ms = max(1, int(bus.lease_seconds * 1000))
        # Renew several times per lease so a couple of slow rounds do not lose it.
        self._tick = min(1.0, bus.lease_seconds / 5)
        meta = f"{bus.prefix}_meta.group.{group}"
        self._members_key = f"{meta}.members"
        self._lease_prefix = f"{meta}.lease."
        self._partitions: list[_Partition] = []
        self._by_stream: dict[str, _Partition] = {}
        self._owned: dict[str, int] = {}  # stream -> the epoch we took it in
        self._working = 0  # messages in flight (see working())
        # Streams taken over but whose pending entries are not yet all reclaimed -> cursor.
        self._reclaim: dict[str, str] = {}
        self._buffer: list[Message] = []
        # Entries handed to our caller and not acknowledged yet. Any other entry pending
        # under our name is a read whose reply never reached us (a stall or a broken
        # connection mid-read): the sweep takes those back instead of leaving them stuck.
        self._delivered: set[tuple[str, bytes]] = set()
        self._members: list[str] = []
        # Serialises reads with rebalancing, so no read is in flight on a stream we give up.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # Checked by the lease task: redis-py can swallow a cancellation, so stop() cannot rely
        # on cancel() alone.
        self._closing = False
        self._last_fetch = 0.0
        self._last_sweep = 0.0
        self._last_round = 0.0  # start of the last successful heartbeat
        client = bus.client
        self._hb_script = client.register_script(_HEARTBEAT)
        self._acquire_script = client.register_script(_ACQUIRE)
        self._release_script = client.register_script(_RELEASE)

    # lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        client = self.bus.client
        self._partitions, self._by_stream = [], {}
        for topic in self.topics:
            for p in range(await self.bus.partition_count(topic)):
                stream = self.bus.stream_name(topic, p)
                part = _Partition(topic, p, stream, f"{self._lease_prefix}{topic}.{p}")
                self._partitions.append(part)
                self._by_stream[stream] = part
                try:
                    await client.xgroup_create(stream, self.group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        self._last_fetch = time.monotonic()
        # Return once we hold our share (or a lease has had time to expire), so a caller
        # that starts several members and then publishes sees the final split.
        deadline = time.monotonic() + self.bus.lease_seconds + 2 * self._tick
        while True:
            async with self._lock, _keep_cancellation():
                await self._heartbeat()
                await self._rebalance()
            if len(self._owned) >= self._target() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(self._tick)
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"bus-lease-{self.member}")

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            # wait() rather than await: the task's CancelledError is not ours to re-raise,
            # while a cancellation of our caller still propagates.
            await asyncio.wait({self._task})
            self._task = None
        owned = [self._by_stream[s].lease_key for s in self._owned]
        self._owned.clear()
        self._reclaim.clear()
        self._buffer.clear()
        # Best effort: if Redis is gone the leases and member entry simply expire.
        # The consumer is not deleted from the Redis group: that would drop its pending
        # entries, which the next owner must reclaim.
        with contextlib.suppress(RedisError, OSError):
            if owned:
                await self._release_script(keys=owned, args=[self.member])
            await self.bus.client.zrem(self._members_key, self.member)

    # delivery --------------------------------------------------------------------------

    async def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        self._last_fetch = time.monotonic()
        deadline = self._last_fetch + max(0.0, timeout)
        while True:
            async with self._lock, _keep_cancellation():
                if time.monotonic() - self._last_round > self.bus.lease_seconds / 2:
                    # Background rounds stalled or failed: our leases may have lapsed, so
                    # confirm them before reading partitions someone else may now own.
                    await self._heartbeat()
                    await self._rebalance()
                if self._buffer:
                    return self._take(max_messages)
                # Takeovers first: what a previous owner left pending is older than anything
                # still unread in that partition.
                out = await self._reclaim_pending(max_messages)
                if not out and time.monotonic() - self._last_sweep >= self.bus.lease_seconds:
                    out = await self._sweep(max_messages)
                if out:
                    return out
                remaining = deadline - time.monotonic()
                streams = sorted(
                    (s for s in self._owned if s not in self._reclaim), key=self._order
                )
                if streams:
                    # Block at most one tick so the rebalancer gets the lock regularly.
                    block = int(min(remaining, self._tick) * 1000)
                    reply = await self.bus.client.xreadgroup(
                        self.group,
                        self.member,
                        dict.fromkeys(streams, ">"),
                        count=max_messages,
                        block=block if block > 0 else None,
                    )
                    for raw_stream, entries in reply or []:
                        stream = raw_stream.decode()
                        self._buffer.extend(self._message(stream, e, f) for e, f in entries)
                    if self._buffer:
                        return self._take(max_messages)
            if remaining <= 0:
                return []
            if not streams:
                await asyncio.sleep(min(remaining, self._tick))

    async def ack(self, message: Message) -> None:
        await self.ack_many([message])

    async def ack_many(self, messages: Sequence[Message]) -> None:
        by_stream: dict[str, list[bytes]] = {}
        for message in messages:
            stream, entry_id = message.ack_token
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, entry_ids in by_stream.items():  # one stream, from a partition's batch
            await self.bus.client.xack(stream, self.group, *entry_ids)
            self._delivered.difference_update((stream, e) for e in entry_ids)

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        self._working += 1
        try:
            yield
        finally:
            self._working -= 1

    async def owns(self, message: Message) -> bool:
        stream = message.ack_token[0]
        if time.monotonic() - self._last_round > self.bus.lease_seconds / 2:
            # Not renewed for a while (stalled, or Redis slow): the lease may have lapsed and
            # another member taken the partition; confirm before doing anything with it.
            async with self._lock, _keep_cancellation():
                await self._heartbeat()
                await self._rebalance()
        return self._owned.get(stream) == message.fence

    def _take(self, n: int) -> list[Message]:
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _message(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
        part = self._by_stream[stream]
        self._delivered.add((stream, entry_id))
        return Message(
            topic=part.topic,
            partition=part.partition,
            key=fields[b"key"].decode(),
            value=fields[b"value"],
            headers=orjson.loads(fields.get(b"headers") or b"{}"),
            ack_token=(stream, entry_id),
            fence=self._owned.get(stream, 0),
        )

    async def _reclaim_pending(self, limit: int) -> list[Message]:
        """Claim entries left pending in partitions we just took over (any consumer's)."""
        out: list[Message] = []
        client = self.bus.client
        for stream in sorted(self._reclaim, key=self._order):
            if len(out) >= limit:
                break
            cursor = self._reclaim[stream]
            # min-idle 0: holding the lease means the previous owner is gone or gave it up.
            reply = await client.xautoclaim(
                stream, self.group, self.member, 0, cursor, count=limit - len(out)
            )
            next_cursor, entries = reply[0], reply[1]
            batch = [self._message(stream, e, f) for e, f in entries if f is not None]
            await self._set_redeliveries(stream, batch)
            out.extend(batch)
            if next_cursor in (b"0-0", "0-0"):
                del self._reclaim[stream]
            else:
                self._reclaim[stream] = next_cursor.decode()
        return out

    async def _sweep(self, limit: int) -> list[Message]:
        """Claim entries another member read from our partitions after we took them over
        (it stalled past its lease and read before noticing), and entries read under our
        own name whose reply we never got; after two leases of idleness they are treated as
        abandoned.
        """
        self._last_sweep = time.monotonic()
        out: list[Message] = []
        client = self.bus.client
        min_idle = 2 * self._lease_ms
        for stream in sorted((s for s in self._owned if s not in self._reclaim), key=self._order):
            if len(out) >= limit:
                break
            pending = await client.xpending_range(
                stream, self.group, "-", "+", limit - len(out), idle=min_idle
            )
            ids = [p["message_id"] for p in pending
                   if p["consumer"].decode() != self.member
                   or (stream, p["message_id"]) not in self._delivered]
            if not ids:
                continue
            entries = await client.xclaim(stream, self.group, self.member, min_idle, ids)
            batch = [self._message(stream, e, f) for e, f in entries if f is not None]
            await self._set_redeliveries(stream, batch)
            out.extend(batch)
        return out

    async def _set_redeliveries(self, stream: str, batch: list[Message]) -> None:
        if not batch:
            return
        first, last = batch[0].ack_token[1], batch[-1].ack_token[1]
        pending = await self.bus.client.xpending_range(
            stream, self.group, first, last, len(batch), consumername=self.member
        )
        counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        for m in batch:
            m.redeliveries = max(0, counts.get(m.ack_token[1], 1) - 1)

    # partition ownership ---------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._tick)
            if self._closing:
                return
            if (not self._working
                    and time.monotonic() - self._last_fetch > self.bus.max_poll_interval):
                # Hung caller: let the leases lapse; fetch resumes heartbeating when called.
                continue
            try:
                async with self._lock, _keep_cancellation():
                    await self._heartbeat()
                    await self._rebalance()
            except (RedisError, OSError) as exc:
                log.warning("bus member %s: lease round failed: %s", self.member, exc)
            except Exception:
                # Keep heartbeating: a dead lease task would silently hand our partitions away.
                log.exception("bus member %s: lease round failed", self.member)

    async def _heartbeat(self) -> None:
        started = time.monotonic()
        streams = sorted(self._owned)
        leases = [self._by_stream[s].lease_key for s in streams]
        members, held = await self._hb_script(
            keys=[self._members_key, *leases, *(f"{k}.epoch" for k in leases)],
            args=[self.member, self._lease_ms, *(self._owned[s] for s in streams)],
        )
        self._members = sorted(m.decode() for m in members)
        lost = {s for s, ok in zip(streams, held, strict=True) if not ok}
        if lost:
            log.warning("bus member %s lost leases on %s", self.member, sorted(lost))
            self._drop(lost)
        self._last_round = started

    def _target(self) -> int:
        """Our share: partitions split as evenly as possible over the sorted live members.

        Exact shares (not ceil for everyone) so the shares sum to the partition count and no
        member is starved when the division is uneven.
        """
        total = len(self._partitions)
        members = self._members or [self.member]
        n = len(members)
        idx = members.index(self.member) if self.member in members else n - 1
        return total // n + (1 if idx < total % n else 0)

    async def _rebalance(self) -> None:
        target = self._target()
        owned = sorted(self._owned, key=self._order)
        if len(owned) > target:
            # Give away idle partitions, never one with work in flight: releasing it would
            # fence that work off and have it done (and paid for) again by the taker. A busy
            # one goes at a later round, once its work is acknowledged.
            busy = {stream for stream, _ in self._delivered}
            extra = [s for s in reversed(owned) if s not in busy][:len(owned) - target]
            if not extra:
                return
            await self._release_script(
                keys=[self._by_stream[s].lease_key for s in extra], args=[self.member]
            )
            self._drop(set(extra))
        elif len(owned) < target:
            # Start looking at a member-specific offset so joiners do not all race for the
            # same free partitions.
            total = len(self._partitions)
            members = self._members or [self.member]
            idx = members.index(self.member) if self.member in members else 0
            start = idx * total // len(members)
            rotated = self._partitions[start:] + self._partitions[:start]
            candidates = [p for p in rotated if p.stream not in self._owned]
            if not candidates:
                return
            got = await self._acquire_script(
                keys=[p.lease_key for p in candidates]
                + [f"{p.lease_key}.epoch" for p in candidates],
                args=[self.member, self._lease_ms, target - len(owned)],
            )
            for part, epoch in zip(candidates, got, strict=True):
                if epoch:
                    self._owned[part.stream] = int(epoch)
                    self._reclaim[part.stream] = "0-0"

    def _order(self, stream: str) -> tuple[str, int]:
        part = self._by_stream[stream]
        return part.topic, part.partition

    def _drop(self, streams: set[str]) -> None:
        """Forget partitions we no longer own; unreturned reads stay pending for the next owner."""
        for s in streams:
            self._owned.pop(s, None)
            self._reclaim.pop(s, None)
        self._buffer = [m for m in self._buffer if m.ack_token[0] not in streams]
        self._delivered = {d for d in self._delivered if d[0] not in streams}


__all__ = ["RedisStreamsBus", "RedisStreamsConsumer"]
