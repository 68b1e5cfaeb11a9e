"""A run's task stream, written by the engine (the events' shapes:
schemas/workflow/stream.py).

Every event that shows a recorded fact (a node started or finished, the run's end) carries
`FACT_FIELD`, the version of the run's event it shows (the gateway leaves it out of what it
sends): a member taking the run over reads which facts the dead attempt streamed and streams
the others, so a client misses none and sees none twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import orjson

from adapters.kv.base import KeyValueStore
from schemas.conversation.naming import (
    FACT_FIELD,
    task_owner_key,
    task_stop_key,
    task_stream_key,
)
from workers.conversation.task_stream import TaskStream

log = logging.getLogger(__name__)
READ_BATCH = 1000


class RunStream:
    """The run's task stream, fenced as chat's (workers/conversation/task_stream.py): this
    attempt claims it, and writes only while no later attempt has."""

    def __init__(self, stream: TaskStream, owner_key: str) -> None:
        self.stream = stream
        self.owner_key = owner_key  # whose task it is: what a stop request is checked against
        self.streamed: set[int] = set()  # facts (run event versions) already on the stream
        self.kept_at = time.monotonic()

    @classmethod
    def of(cls, kv: KeyValueStore, task_id: UUID, owner: str, ttl: int,
           fence: int) -> RunStream:
        return cls(TaskStream(kv, task_stream_key(task_id), task_stop_key(task_id), owner,
                              ttl, fence), task_owner_key(task_id))

    async def claim(self) -> None:
        """Make the stream this attempt's; learn which facts earlier attempts streamed."""
        if await self.stream.claim() == 0:
            return
        after = "0"
        while True:
            read = await self.stream.kv.read(self.stream.key, after, count=READ_BATCH,
                                             block_ms=0)
            if not read:
                return
            for _, entry in read:
                fact = orjson.loads(entry).get(FACT_FIELD)
                if fact is not None:
                    self.streamed.add(fact)
            after = read[-1][0]

    async def publish(self, events: Sequence[dict[str, Any]]) -> None:
        """The events not streamed yet, in one write."""
        fresh = [e for e in events if e.get(FACT_FIELD) not in self.streamed
                 or FACT_FIELD not in e]
        if not fresh:
            return
        await self.stream.publish_many(fresh)
        self.streamed.update(e[FACT_FIELD] for e in fresh if FACT_FIELD in e)
        self.kept_at = time.monotonic()

    async def keep(self) -> None:
        """A stream (and this attempt's claim) expires TASK_STREAM_TTL_SECONDS after its last
        write: while a node runs longer than a third of that without a word, the claim is
        renewed (LostOwnership if a later attempt took the stream), the stream kept, and the
        task's owner too (a stop request names the task alone)."""
        if time.monotonic() - self.kept_at < self.stream.ttl / 3:
            return
        await self.stream.claim()
        await self.stream.kv.expire(self.stream.key, self.stream.ttl)
        await self.stream.kv.expire(self.owner_key, self.stream.ttl)
        self.kept_at = time.monotonic()

    async def stop_requested(self) -> bool:
        return await self.stream.stop_requested()
