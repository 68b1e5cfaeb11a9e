"""A task's stream of SSE events in the key-value store (Redis in production): what the chat
processor writes (tokens, then one closing `message_end` or `error`) and every gateway
process can read from any point.

Short-lived: it expires `ttl` seconds after its last write. Entry ids are the SSE event
ids, so a client resumes with Last-Event-ID without gaps or repeats.

Fenced: the attempt answering the task claims the stream with its message's fence (see
workers/ownership.py), and a write succeeds only while the stream is that fence's. A stale
attempt (its worker stalled past its lease, another took the message over) can neither
write after the new attempt's claim nor claim the stream back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.kv.base import KeyValueStore
from adapters.transient import is_transient
from schemas.conversation.naming import TERMINAL_STREAM_EVENTS
from workers.ownership import LostOwnership

log = logging.getLogger(__name__)
# Redis unreachable for this long fails the answer (it is then retried whole); shorter
# outages are ridden out, so a Redis restart never pays for the model's answer twice.
WRITE_OUTAGE_SECONDS = 60.0


@dataclass
class TaskStream:
    kv: KeyValueStore
    key: str
    stop_key: str
    owner: str  # "app:end_user": only its own user stops a task
    ttl: int
    fence: int  # the writing attempt's (its message's fence)

    async def claim(self) -> int:
        """Make the stream this attempt's; how many entries earlier attempts wrote.
        LostOwnership if a later attempt has claimed it."""
        written = await self.kv.claim(self.key, self.fence, self.ttl)
        if written is None:
            raise LostOwnership(f"task stream {self.key} was taken by a later attempt")
        return written

    async def publish(self, event: dict[str, Any]) -> None:
        await self.publish_many([event])

    async def publish_many(self, events: Sequence[dict[str, Any]]) -> None:
        """In order, one entry each, in one round trip (all or none, so a retry after a
        failed write adds no partial batch); LostOwnership, nothing written, if a later
        attempt has claimed the stream. A write that fails because Redis is unreachable is
        retried with backoff for WRITE_OUTAGE_SECONDS; the model's answer meanwhile waits
        in the HTTP stream instead of being asked for again."""
        started = time.monotonic()
        backoff = 0.05
        while True:
            try:
                written = await self.kv.append(self.key, [orjson.dumps(e) for e in events],
                                               self.ttl, fence=self.fence)
                break
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() - started > WRITE_OUTAGE_SECONDS:
                    raise
                log.warning("task stream write failed, retrying", extra={
                    "stream": self.key, "error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        if not written:
            raise LostOwnership(f"task stream {self.key} was taken by a later attempt")

    async def closed(self) -> bool:
        """Whether the closing event was written (a redelivered task must not write two)."""
        last = await self.kv.newest(self.key, 1)
        return bool(last) and orjson.loads(last[0][1])["event"] in TERMINAL_STREAM_EVENTS

    async def stop_requested(self) -> bool:
        """Whether its own user asked to stop the task, read now (a running task learns it
        from the process's `StopWatch`)."""
        try:
            asked_by = await self.kv.get(self.stop_key)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return False  # unknown while Redis is away: asked again at the next check
        return asked_by == self.owner


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


class StopWatch:
    """The stop requests of the tasks (chat answers, workflow runs) one process runs, their
    stop keys read together in one round trip every `every` seconds while any is watched
    (not one read per task and check): a task's future is set once its own user asked.
    Redis unreachable: the read is tried again at the next tick."""

    def __init__(self, kv: KeyValueStore, every: float) -> None:
        self.kv = kv
        self.every = every
        self._watched: dict[asyncio.Future[None], tuple[str, str]] = {}  # (stop key, owner)
        self._polling: asyncio.Task[None] | None = None

    def watch(self, stream: TaskStream) -> asyncio.Future[None]:
        asked = asyncio.get_running_loop().create_future()
        self._watched[asked] = (stream.stop_key, stream.owner)
        if self._polling is None or self._polling.done():
            self._polling = asyncio.create_task(self._poll(), name="stop watch")
        return asked

    def unwatch(self, asked: asyncio.Future[None]) -> None:
        self._watched.pop(asked, None)

    async def _poll(self) -> None:
        while self._watched:
            await asyncio.sleep(self.every)
            watched = list(self._watched.items())
            if not watched:
                return
            try:
                asked_by = await self.kv.get_many([key for _, (key, _) in watched])
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("reading stop requests failed")
                continue
            for (asked, (_, owner)), by in zip(watched, asked_by, strict=True):
                if by == owner and not asked.done():
                    asked.set_result(None)
