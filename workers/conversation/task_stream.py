"""A task's stream of SSE events in the key-value store (Redis in production): what the chat
processor writes (tokens, then one closing `message_end` or `error`) and every gateway
process can read from any point.

Short-lived: it expires `ttl` seconds after its last write. Entry ids are the SSE event
ids, so a client resumes with Last-Event-ID without gaps or repeats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.kv.base import KeyValueStore
from schemas.conversation.naming import TERMINAL_STREAM_EVENTS

STOP_CHECK_SECONDS = 0.2  # how often a running answer looks for a stop request


@dataclass
class TaskStream:
    kv: KeyValueStore
    key: str
    stop_key: str
    owner: str  # "app:end_user": only its own user stops a task
    ttl: int
    _checked_stop_at: float = 0.0

    async def publish(self, event: dict[str, Any]) -> None:
        await self.publish_many([event])

    async def publish_many(self, events: Sequence[dict[str, Any]]) -> None:
        """In order, one entry each, in one round trip."""
        await self.kv.append(self.key, [orjson.dumps(event) for event in events], self.ttl)

    async def length(self) -> int:
        return await self.kv.length(self.key)

    async def closed(self) -> bool:
        """Whether the closing event was written (a redelivered task must not write two)."""
        last = await self.kv.last(self.key)
        return last is not None and orjson.loads(last)["event"] in TERMINAL_STREAM_EVENTS

    async def stop_requested(self, *, throttle: bool = False) -> bool:
        if throttle and time.monotonic() - self._checked_stop_at < STOP_CHECK_SECONDS:
            return False
        self._checked_stop_at = time.monotonic()
        return await self.kv.get(self.stop_key) == self.owner


@dataclass
class TokenWriter:
    """Tokens onto a task stream without waiting for Redis per token: the first is written
    at once; those arriving while a write is under way go together in the next one (one
    round trip for many tokens when the model is faster than Redis answers). Each stays its
    own entry, so event ids and Last-Event-ID resumption are unchanged. `drain` before
    anything that must come after the tokens (the closing event)."""

    stream: TaskStream
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _writing: asyncio.Task[None] | None = None

    def add(self, event: dict[str, Any]) -> None:
        self._pending.append(event)
        if self._writing is None:
            self._writing = asyncio.create_task(self._write())
        elif self._writing.done():
            self._writing.result()  # a failed write fails the answer (it is retried whole)
            self._writing = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            await self.stream.publish_many(batch)

    async def drain(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing
