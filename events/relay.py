"""The relay: publishes the event store's notification log to the event topics.

One relay leads at a time (a Postgres advisory lock; standbys wait for it). It reads events
after its tracked position, publishes each to its context's topic keyed by aggregate id,
then records the new position. A crash between the two publishes some events again, which
consumers recognise by aggregate version: at least once, never lost.

It also numbers the messages of each topic partition (header `seq`), recorded with its
position; consumer groups record the highest number they handled, so a group's lag comes
from Postgres on any broker (`events/consumer_groups.py`). Republished after a crash, a
message gets its number again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial

import asyncpg
import orjson

from adapters.bus.base import Bus, OutgoingMessage, partition_for
from events.envelope import Envelope
from events.listener import Notifications
from events.postgres_store import EVENTS_CHANNEL, SELECT_STORED_AFTER, message_value
from events.registry import EventTypes
from events.routing import Routing
from schemas.base import EventPayload

log = logging.getLogger(__name__)
RELAY_LOCK_KEY = 0x6564647952  # "eddyR"
SEQ_HEADER = "seq"


def message_headers(event: Envelope[EventPayload]) -> dict[str, str]:
    """The headers of an event's messages on its topics."""
    return {"event_type": event.type, "correlation_id": str(event.correlation_id)}


class Relay:
    def __init__(self, types: EventTypes, bus: Bus, routing: Routing, dsn: str,
                 name: str = "relay", batch_size: int = 500) -> None:
        self.types = types
        self.routing = routing
        self.bus = bus
        self.dsn = dsn
        self.name = name
        self.batch_size = batch_size
        # (topic, partition) -> the last message number recorded; loaded when leading
        self._seqs: dict[tuple[str, int], int] | None = None
        self._partitions: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.dsn)
        notifications = Notifications(self.dsn, [EVENTS_CHANNEL])
        await notifications.start()
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                if stop.is_set():
                    return
                await asyncio.sleep(1.0)  # standby: another relay leads
            log.info("relay leading", extra={"relay": self.name})
            self._seqs = None  # another relay may have led meanwhile
            await conn.execute(
                "INSERT INTO relay_positions (name, position) VALUES ($1, 0)"
                " ON CONFLICT DO NOTHING", self.name)
            position = await conn.fetchval(
                "SELECT position FROM relay_positions WHERE name = $1", self.name)
            # Armed while a batch is read: an append committed meanwhile wakes the next wait.
            with notifications.alarm(EVENTS_CHANNEL) as appended:
                while not stop.is_set():
                    appended.clear()
                    published = await self.publish_batch(conn, position)
                    if published == position:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(appended.wait(), 0.5)
                    position = published
        finally:
            await notifications.stop()
            await conn.close()

    async def publish_batch(self, conn: asyncpg.Connection, position: int) -> int:
        # The rows as stored, passed on as they are: an event is decoded only when a route's
        # condition needs its payload.
        rows = await conn.fetch(SELECT_STORED_AFTER, position, self.batch_size)
        if self._seqs is None:
            self._seqs = {(r["topic"], r["partition"]): r["seq"] for r in await conn.fetch(
                "SELECT topic, partition, seq FROM topic_partition_seqs")}
        seqs = dict(self._seqs)  # kept once recorded
        outgoing = []
        for at, key, version, stored_topic, state in rows:
            aggregate_type, _, event_type = stored_topic.partition(":")
            raw = orjson.loads(state)
            value = message_value(aggregate_type, event_type, key, version, at, state)
            headers = {"event_type": event_type, "correlation_id": raw["correlation_id"]}
            payload = partial(self.types.decode, event_type, raw["schema_version"], raw["payload"])
            for topic in self.routing.topics_of(aggregate_type, event_type, payload):
                partition = partition_for(key, await self._partition_count(topic))
                seqs[(topic, partition)] = seq = seqs.get((topic, partition), 0) + 1
                outgoing.append(OutgoingMessage(topic, key, value,
                                                {**headers, SEQ_HEADER: str(seq)}, partition))
        # Pipelined: one round trip per batch; per-key order is the log's order.
        await self.bus.publish_many(outgoing)
        if not rows:
            return position
        last: int = rows[-1]["notification_id"]
        moved = [w for w, n in seqs.items() if self._seqs.get(w) != n]
        # One statement, so one round trip and atomic without a transaction block.
        await conn.execute(
            "WITH moved AS (UPDATE relay_positions SET position = $2 WHERE name = $1)"
            " INSERT INTO topic_partition_seqs (topic, partition, seq)"
            " SELECT * FROM unnest($3::text[], $4::int[], $5::bigint[])"
            " ON CONFLICT (topic, partition) DO UPDATE SET seq = excluded.seq",
            self.name, last, [w[0] for w in moved], [w[1] for w in moved],
            [seqs[w] for w in moved])
        self._seqs = seqs
        return last

    async def _partition_count(self, topic: str) -> int:
        # Fixed while this relay leads: a grown topic is picked up on restart (as publishers
        # and members do), so one key never lands on two partitions in one run.
        if topic not in self._partitions:
            self._partitions.update(await self.bus.topic_partitions([topic]))
        return self._partitions[topic]
