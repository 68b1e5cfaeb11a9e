"""The scheduler (Celery beat's job): periodic jobs, run by one leader at a time.

The jobs are the backbone's (below) and those the contexts' manifests declare (`jobs=[…]`),
each with its interval. Leadership is a lease in the key-value store, so a second scheduler
stands by and takes over when the leader stops renewing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.bus.base import Bus
from projections.registry import Projection
from projections.versions import maintained_lags
from workers.container import WorkerContainer, provide
from workers.declarations import Job

log = logging.getLogger(__name__)
LEADER_KEY = "scheduler:leader"
LEASE_SECONDS = 10


async def advance_projection_watermarks(*, engine: AsyncEngine,
                                        projections: Mapping[str, Projection]) -> None:
    for version, lag in (await maintained_lags(engine, projections.values())).items():
        log.debug("projection lag", extra={"projection": version, "lag": lag})


async def trim_consumed_messages(*, bus: Bus) -> None:
    removed = await bus.trim_consumed()
    if removed:
        log.info("trimmed consumed messages", extra={"removed": removed})


BACKBONE_JOBS = (Job("advance_projection_watermarks", 5.0, advance_projection_watermarks),
                 Job("trim_consumed_messages", 60.0, trim_consumed_messages))


async def run_job(c: WorkerContainer, job: Job) -> None:
    await provide(c, job.run)


async def run_scheduler(c: WorkerContainer, stop: asyncio.Event) -> None:
    me = str(uuid.uuid4())
    loop = asyncio.get_running_loop()
    next_run = dict.fromkeys(c.jobs, 0.0)
    while not stop.is_set():
        leader = await c.kv.set(LEADER_KEY, me, ttl=LEASE_SECONDS, only_if_new=True)
        if not leader and await c.kv.get(LEADER_KEY) == me:
            leader = await c.kv.expire(LEADER_KEY, LEASE_SECONDS)
        if leader:
            for name, job in c.jobs.items():
                if loop.time() >= next_run[name]:
                    next_run[name] = loop.time() + job.every
                    try:
                        await run_job(c, job)
                    except Exception:
                        log.exception("scheduled job failed", extra={"job": name})
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    if await c.kv.get(LEADER_KEY) == me:
        await c.kv.delete(LEADER_KEY)
