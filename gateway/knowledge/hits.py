"""Retrieval hit counts: which segments retrievals returned, recorded as events in batches.

A retrieval is a read and must stay as cheap as one, so it only adds to an in-process
tally. Every HIT_COUNT_FLUSH_SECONDS the tally goes out as one `RecordSegmentHits` command
per dataset (published, not waited for): one event per dataset and window, however many
retrievals, instead of a write per retrieval. Counts are eventually consistent; a gateway
killed before its window closes loses that window's hits. A clean shutdown publishes them:
it lets a flush under way finish (cancelling it mid-post would lose the datasets not yet
posted) and then flushes what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from uuid import UUID, uuid4

from fastapi import Request

from adapters.transient import is_transient
from gateway.commanding import CommandGateway
from gateway.deps import command_gateway, get_container
from schemas.knowledge.commands import RecordSegmentHits
from schemas.knowledge.events import SegmentHits

log = logging.getLogger(__name__)

MAX_FLUSH_ATTEMPTS = 10  # a window that cannot be published this many times is dropped

# (tenant, dataset) -> (document, segment) -> hits
Tally = dict[tuple[UUID, UUID], Counter[tuple[UUID, UUID]]]


class SegmentHitBatcher:
    def __init__(self, gateway: CommandGateway, interval: float) -> None:
        self._gateway = gateway
        self._interval = interval
        self._tally: Tally = {}
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def record(self, tenant_id: UUID, dataset_id: UUID,
               hits: Iterable[tuple[UUID, UUID]]) -> None:
        """Count (document, segment) pairs a retrieval returned."""
        counter = self._tally.setdefault((tenant_id, dataset_id), Counter())
        counter.update(hits)
        if self._task is None or self._task.done():
            # Runs only while there is something to flush, so an idle gateway has no timer.
            self._task = asyncio.create_task(self._flush_while_pending(),
                                             name="segment-hit-flusher")

    async def close(self) -> None:
        self._closing.set()  # the flusher stops waiting for its window
        if self._task is not None:
            await self._task  # a flush it has under way finishes
            self._task = None
        await self.flush()

    async def _flush_while_pending(self) -> None:
        while self._tally:
            try:
                await asyncio.wait_for(self._closing.wait(), self._interval)
            except TimeoutError:
                await self.flush()  # the window closed
            else:
                return  # closing: close() flushes what is left

    async def flush(self) -> None:
        tally, self._tally = self._tally, {}
        for (tenant_id, dataset_id), counter in tally.items():
            batch_id = uuid4()
            try:
                await self._gateway.post(RecordSegmentHits(
                    batch_id=batch_id, dataset_id=dataset_id, hits=[
                        SegmentHits(document_id=d, segment_id=s, count=n)
                        for (d, s), n in sorted(counter.items())]),
                    aggregate_id=batch_id, tenant_id=tenant_id, actor_id=None)
                self._failures = 0
            except Exception as exc:
                self._failures += 1
                keep = is_transient(exc) and self._failures < MAX_FLUSH_ATTEMPTS
                log.warning("segment hits not published%s", "; retried" if keep else "",
                            extra={"dataset_id": str(dataset_id), "error": repr(exc)[:200],
                                   "hits": sum(counter.values())})
                if keep:  # the bus is down for now: keep them for the next window
                    self._tally.setdefault((tenant_id, dataset_id), Counter()).update(counter)


def segment_hit_batcher(request: Request) -> SegmentHitBatcher:
    """The app's batcher (made on first use, inside the running loop)."""
    state = request.app.state
    if getattr(state, "segment_hits", None) is None:
        state.segment_hits = SegmentHitBatcher(
            command_gateway(request), get_container(request).settings.HIT_COUNT_FLUSH_SECONDS)
        state.on_shutdown.append(state.segment_hits.close)
    batcher: SegmentHitBatcher = state.segment_hits
    return batcher
