"""The scheduler (Celery beat's job): periodic jobs, run by one leader at a time.

The jobs are the backbone's (below) and those the contexts' manifests declare (`jobs=[…]`),
each with its schedule (seconds or crontab; from the settings for Dify's switchable jobs).
Leadership is a lease in the key-value store (SCHEDULER_LEASE_SECONDS), so a second
scheduler stands by and takes over when the leader stops renewing; each job's last run is
kept there too, so the new leader neither repeats a run nor misses one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.bus.base import Bus
from adapters.kv.base import KeyValueStore
from adapters.transient import is_transient
from projections.registry import Projection
from projections.versions import maintained_lags
from workers.container import WorkerContainer, provide
from workers.declarations import Job, Schedule
from workflow_graph.cron import Cron

log = logging.getLogger(__name__)
LEADER_KEY = "scheduler:leader"
CHECK_SECONDS = 1.0  # how often the lease is renewed (or sought) and due jobs looked for
RETRY_FAILED_SECONDS = 30.0


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


def last_run_key(job: str) -> str:
    return f"scheduler:last-run:{job}"


def is_due(schedule: Schedule, last: float, now: float) -> bool:
    """Whether a run is due since the last one started (epoch seconds). However many ticks
    were missed (the scheduler was down), one run catches up."""
    if isinstance(schedule, Cron):
        return schedule.due(datetime.fromtimestamp(last, UTC), datetime.fromtimestamp(now, UTC))
    return now - last >= schedule


class Lease:
    """Leadership: a key in the key-value store, taken when free, renewed by its holder; a
    holder that stops renewing (killed) loses it after `seconds`."""

    def __init__(self, kv: KeyValueStore, seconds: int) -> None:
        self.kv, self.seconds, self.holder = kv, seconds, str(uuid.uuid4())

    async def hold(self) -> bool:
        if await self.kv.set(LEADER_KEY, self.holder, ttl=self.seconds, only_if_new=True):
            return True
        return await self.kv.get(LEADER_KEY) == self.holder \
            and await self.kv.expire(LEADER_KEY, self.seconds)

    async def release(self) -> None:
        if await self.kv.get(LEADER_KEY) == self.holder:
            await self.kv.delete(LEADER_KEY)


class DueJobs:
    """Runs the jobs that are due. Each job's last run is kept in the key-value store, so a
    new leader, or a scheduler started again after a while, goes on from it: an overdue job
    runs once at once. A crontab job never run before waits for its next tick (Celery beat
    too); an interval job runs at once."""

    def __init__(self, c: WorkerContainer) -> None:
        self.c = c
        self.schedules = {name: schedule for name, job in c.jobs.items()
                          if (schedule := job.schedule_in(c.settings)) is not None}
        self.retry_at: dict[str, float] = {}  # a failed job's next attempt (this process)

    async def run(self) -> None:
        for name, schedule in self.schedules.items():
            now = time.time()
            if self.retry_at.get(name, 0.0) > now:
                continue
            try:
                await self._run_if_due(name, schedule, now)
            except Exception as exc:
                # a dependency restarting: expected, try again soon, no traceback
                log.log(logging.WARNING if is_transient(exc) else logging.ERROR,
                        "scheduled job failed", extra={"job": name},
                        exc_info=not is_transient(exc))
                self.retry_at[name] = now + RETRY_FAILED_SECONDS

    async def _run_if_due(self, name: str, schedule: Schedule, now: float) -> None:
        recorded = await self.c.kv.get(last_run_key(name))
        if recorded is None and isinstance(schedule, Cron):
            await self.c.kv.set(last_run_key(name), repr(now))
            return
        if recorded is not None and not is_due(schedule, float(recorded), now):
            return
        await run_job(self.c, self.c.jobs[name])
        # recorded once it ran: a run cut short (killed, the lease lost) is run again
        await self.c.kv.set(last_run_key(name), repr(now))
        log.debug("scheduled job ran", extra={"job": name})


async def run_scheduler(c: WorkerContainer, stop: asyncio.Event) -> None:
    """Holds or waits for the lease every second; the leader runs the due jobs in a task of
    their own, so a long job does not keep it from renewing the lease. A leader that finds
    its lease gone (paused past it) stops the job it is running: the new leader runs jobs
    now."""
    lease = Lease(c.kv, c.settings.SCHEDULER_LEASE_SECONDS)
    due = DueJobs(c)
    running: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            leading = await lease.hold()
            if leading and (running is None or running.done()):
                running = asyncio.create_task(due.run())
            elif not leading and running is not None and not running.done():
                log.warning("scheduler lease lost; its running job stopped")
                running.cancel()
            try:
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
            except TimeoutError:
                pass
    finally:
        if running is not None:
            running.cancel()
        await lease.release()
