"""The scheduler (Celery beat's job): periodic jobs, run by one leader at a time.

Jobs are registered in one dict with their interval. Leadership is a lease in the key-value
store, so a second scheduler stands by and takes over when the leader stops renewing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from projections.versions import maintained_lags
from workers.container import WorkerContainer

log = logging.getLogger(__name__)
LEADER_KEY = "scheduler:leader"
LEASE_SECONDS = 10


async def advance_projection_watermarks(c: WorkerContainer) -> None:
    for version, lag in (await maintained_lags(c.engine, c.projections.values())).items():
        log.debug("projection lag", extra={"projection": version, "lag": lag})


async def trim_consumed_messages(c: WorkerContainer) -> None:
    removed = await c.bus.trim_consumed()
    if removed:
        log.info("trimmed consumed messages", extra={"removed": removed})


# job name -> (interval seconds, job)
JOBS: dict[str, tuple[float, Callable[[WorkerContainer], Awaitable[None]]]] = {
    "advance_projection_watermarks": (5.0, advance_projection_watermarks),
    "trim_consumed_messages": (60.0, trim_consumed_messages),
}


async def run_scheduler(c: WorkerContainer, stop: asyncio.Event) -> None:
    me = str(uuid.uuid4())
    loop = asyncio.get_running_loop()
    next_run = dict.fromkeys(JOBS, 0.0)
    while not stop.is_set():
        leader = await c.kv.set(LEADER_KEY, me, ttl=LEASE_SECONDS, only_if_new=True)
        if not leader and await c.kv.get(LEADER_KEY) == me:
            leader = await c.kv.expire(LEADER_KEY, LEASE_SECONDS)
        if leader:
            for name, (interval, job) in JOBS.items():
                if loop.time() >= next_run[name]:
                    next_run[name] = loop.time() + interval
                    try:
                        await job(c)
                    except Exception:
                        log.exception("scheduled job failed", extra={"job": name})
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    if await c.kv.get(LEADER_KEY) == me:
        await c.kv.delete(LEADER_KEY)
