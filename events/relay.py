"""The relay: publishes the event store's notification log to the event topics.

One relay leads at a time (a Postgres advisory lock; standbys wait for it). It reads events
after its tracked position, publishes each to its context's topic keyed by aggregate id,
then records the new position. A crash between the two publishes some events again, which
consumers recognise by aggregate version: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from adapters.bus.base import Bus, OutgoingMessage
from events.envelope import Envelope
from events.listener import Notifications
from events.postgres_store import EVENTS_CHANNEL
from events.routing import Routing
from events.store import EventStore
from schemas.base import EventPayload

log = logging.getLogger(__name__)
RELAY_LOCK_KEY = 0x6564647952  # "eddyR"


def message_headers(event: Envelope[EventPayload]) -> dict[str, str]:
    """The headers of an event's messages on its topics."""
    return {"event_type": event.type, "correlation_id": str(event.correlation_id)}


class Relay:
    def __init__(self, store: EventStore, bus: Bus, routing: Routing, dsn: str,
                 name: str = "relay", batch_size: int = 500) -> None:
        self.store = store
        self.routing = routing
        self.bus = bus
        self.dsn = dsn
        self.name = name
        self.batch_size = batch_size

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
            await conn.execute(
                "INSERT INTO relay_positions (name, position) VALUES ($1, 0)"
                " ON CONFLICT DO NOTHING", self.name)
            position = await conn.fetchval(
                "SELECT position FROM relay_positions WHERE name = $1", self.name)
            while not stop.is_set():
                published = await self.publish_batch(conn, position)
                if published == position:
                    await notifications.wait(EVENTS_CHANNEL, timeout=0.5)
                position = published
        finally:
            await notifications.stop()
            await conn.close()

    async def publish_batch(self, conn: asyncpg.Connection, position: int) -> int:
        events = await asyncio.to_thread(self.store.read_from, position, self.batch_size)
        outgoing = []
        for event in events:
            headers, value = message_headers(event), event.to_json()
            outgoing += [OutgoingMessage(topic, str(event.aggregate_id), value, headers)
                         for topic in self.routing.topics_for(event)]
        # Pipelined: one round trip per batch; per-key order is the log's order.
        await self.bus.publish_many(outgoing)
        if not events:
            return position
        last = events[-1].position
        assert last is not None
        await conn.execute("UPDATE relay_positions SET position = $2 WHERE name = $1",
                           self.name, last)
        return last
