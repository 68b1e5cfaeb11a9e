"""A task's stream of SSE events on Redis: what the chat processor writes (tokens, then one
closing `message_end` or `error`) and every gateway process can read from any point.

Short-lived: it expires `ttl` seconds after its last write. Entry ids are the SSE event
ids, so a client resumes with Last-Event-ID without gaps or repeats.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from schemas.conversation.naming import TERMINAL_STREAM_EVENTS

STOP_CHECK_SECONDS = 0.2  # how often a running answer looks for a stop request


@dataclass
class TaskStream:
    redis: aioredis.Redis
    key: str
    stop_key: str
    owner: str  # "app:end_user": only its own user stops a task
    ttl: int
    _checked_stop_at: float = 0.0

    async def publish(self, event: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self.key, {"data": orjson.dumps(event)})
            pipe.expire(self.key, self.ttl)
            await pipe.execute()

    async def length(self) -> int:
        return int(await self.redis.xlen(self.key))

    async def closed(self) -> bool:
        """Whether the closing event was written (a redelivered task must not write two)."""
        last = await self.redis.xrevrange(self.key, count=1)
        return bool(last) and orjson.loads(last[0][1][b"data"])["event"] in TERMINAL_STREAM_EVENTS

    async def stop_requested(self, *, throttle: bool = False) -> bool:
        if throttle and time.monotonic() - self._checked_stop_at < STOP_CHECK_SECONDS:
            return False
        self._checked_stop_at = time.monotonic()
        asked_by = await self.redis.get(self.stop_key)
        return asked_by is not None and asked_by.decode() == self.owner
