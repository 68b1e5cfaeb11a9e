"""Relaying a task's stream (key-value store: a chat answer's or a workflow run's events) to
a client as server-sent events, from any gateway process: entries read as they arrive (a
Redis outage ridden out), framed with their entry ids (the SSE event ids, for Last-Event-ID),
a ping after PING_SECONDS of quiet, ending after the stream's closing event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import orjson
from fastapi import Request

from adapters.kv.base import KeyValueStore
from adapters.transient import is_transient
from gateway.deps import get_container
from schemas.conversation.naming import FACT_FIELD
from schemas.errors import BadRequest

PING_SECONDS = 10.0  # Dify's keep-alive: `event: ping` after this long without an event
READ_BLOCK_MS = 1000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_MAX_STREAM_ID_PART = 2**64 - 1

Entry = tuple[str, dict[str, Any]]


class StreamInterrupted(Exception):
    """The task's stream could not be read for TASK_STREAM_OUTAGE_SECONDS (Redis down)."""


async def entries(request: Request, stream: str, after: str,
                  closing: Collection[str]) -> AsyncIterator[list[Entry]]:
    """The task's events after `after` as lists of (id, event), one list per read (what
    arrived together goes out together: one write to the client, not one per token), and
    an empty list after each PING_SECONDS without one; ends after an event named in
    `closing`. The writers' bookkeeping (FACT_FIELD) is left out.

    Redis going away is ridden out (reads resume from the last id, so nothing is lost or
    repeated); past TASK_STREAM_OUTAGE_SECONDS without a successful read it raises
    StreamInterrupted: the work goes on regardless, the client is told how to come back."""
    c = get_container(request)
    kv, outage = c.kv, c.settings.TASK_STREAM_OUTAGE_SECONDS
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    failing_since: float | None = None
    backoff = 0.1
    while True:
        try:
            reply = await kv.read(stream, after, count=100, block_ms=READ_BLOCK_MS)
        except Exception as exc:
            if not is_transient(exc):
                raise
            failing_since = failing_since if failing_since is not None else loop.time()
            if loop.time() - failing_since >= outage:
                raise StreamInterrupted() from exc
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            reply = None
        else:
            failing_since, backoff = None, 0.1
        if not reply:
            if loop.time() - quiet_since >= PING_SECONDS:
                quiet_since = loop.time()
                yield []
            continue
        quiet_since = loop.time()
        read = []
        for after, entry in reply:
            event = orjson.loads(entry)
            event.pop(FACT_FIELD, None)
            read.append((after, event))
            if event["event"] in closing:
                yield read
                return
        yield read


async def sse(request: Request, stream: str, after: str, closing: Collection[str],
              interrupted: Callable[[], dict[str, Any]]) -> AsyncIterator[bytes]:
    """The stream as SSE bytes; if it cannot be read for long, `interrupted()`'s event
    closes it (headers are sent: the client learns in-band that the stream broke, not the
    task, and how to resume)."""
    try:
        async for read in entries(request, stream, after, closing):
            if not read:
                yield b"event: ping\n\n"
                continue
            yield b"".join(sse_event(entry_id, event) for entry_id, event in read)
    except StreamInterrupted:
        yield sse_event(None, interrupted())


def sse_event(entry_id: str | None, event: dict[str, Any]) -> bytes:
    head = b"id: " + entry_id.encode() + b"\n" if entry_id is not None else b""
    return head + b"data: " + orjson.dumps(event) + b"\n\n"


async def resume_point(kv: KeyValueStore, stream: str, last_event_id: str | None,
                       closing: Collection[str]) -> str:
    """Where a resumed stream starts reading, checked before any header is sent: an id
    this stream never gave is a 400; at or past the closing event, the close is sent
    again (so the client ends instead of waiting for events that will never come)."""
    if not last_event_id:
        return "0"
    resume = stream_id(last_event_id)
    if resume is None:
        raise BadRequest("Last-Event-ID must be an event id of this stream.")
    newest = await kv.newest(stream, 2)
    if newest:
        last_id, entry = newest[0]
        is_closing = orjson.loads(entry)["event"] in closing
        if is_closing and resume >= stream_id(last_id):  # type: ignore[operator]
            return newest[1][0] if len(newest) > 1 else "0"
    text = f"{resume[0]}-{resume[1]}"
    if not await kv.has(stream, text):
        raise BadRequest("Last-Event-ID must be an event id of this stream.")
    return text


def stream_id(value: str) -> tuple[int, int] | None:
    """A stream entry id ("<millis>-<seq>", or "<millis>"), within its 64-bit parts."""
    millis, _, sequence = value.partition("-")
    if not millis.isdigit() or not (sequence == "" or sequence.isdigit()):
        return None
    parts = (int(millis), int(sequence or 0))
    return parts if max(parts) <= _MAX_STREAM_ID_PART else None
