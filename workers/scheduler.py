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
        # renewed only while it is still ours (compare and expire, atomically): a lease that
        # lapsed and was taken by another is never extended by its former holder
        return await self.kv.set(LEADER_KEY, self.holder, ttl=self.seconds, only_if_new=True) \
            or await self.kv.expire_if(LEADER_KEY, self.holder, self.seconds)

    async def release(self) -> None:
        await self.kv.delete_if(LEADER_KEY, self.holder)


class DueJobs:
    """Starts the jobs that are due, each in a task of its own: a long job (the nightly
    clean-up) neither delays the others nor makes the per-minute ones miss ticks; a job still
    running is not started again. Each job's last run is kept in the key-value store, so a
    new leader, or a scheduler started again after a while, goes on from it: an overdue job
    runs once at once. A crontab job never run before waits for its next tick (Celery beat
    too); an interval job runs at once."""

    def __init__(self, c: WorkerContainer) -> None:
        self.c = c
        self.schedules = {name: schedule for name, job in c.jobs.items()
                          if (schedule := job.schedule_in(c.settings)) is not None}
        self.retry_at: dict[str, float] = {}  # a failed job's next attempt (this process)
        self.running: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        for name, schedule in self.schedules.items():
            now = time.time()
            task = self.running.get(name)
            if (task is not None and not task.done()) or self.retry_at.get(name, 0.0) > now:
                continue
            try:
                due = await self._due(name, schedule, now)
            except Exception as exc:
                self._failed(name, exc, now)
                continue
            if due:
                self.running[name] = asyncio.create_task(self._run(name, now),
                                                         name=f"scheduled job {name}")

    async def stop(self) -> None:
        """Cancels the running jobs (the lease lost, or the scheduler stopping) and waits
        for them to end; none is recorded as run, so the leader runs it again."""
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        self.running.clear()

    async def _due(self, name: str, schedule: Schedule, now: float) -> bool:
        recorded = await self.c.kv.get(last_run_key(name))
        if recorded is None and isinstance(schedule, Cron):
            await self.c.kv.set(last_run_key(name), repr(now))
            return False
        return recorded is None or is_due(schedule, float(recorded), now)

    async def _run(self, name: str, started: float) -> None:
        try:
            await run_job(self.c, self.c.jobs[name])
            # recorded once it ran: a run cut short (killed, the lease lost) is run again
            await self.c.kv.set(last_run_key(name), repr(started))
        except Exception as exc:
            self._failed(name, exc, started)
            return
        log.debug("scheduled job ran", extra={"job": name})

    def _failed(self, name: str, exc: Exception, at: float) -> None:
        # a dependency restarting: expected, try again soon, no traceback
        log.log(logging.WARNING if is_transient(exc) else logging.ERROR,
                "scheduled job failed", extra={"job": name}, exc_info=not is_transient(exc))
        self.retry_at[name] = at + RETRY_FAILED_SECONDS


async def run_scheduler(c: WorkerContainer, stop: asyncio.Event) -> None:
    """Holds or waits for the lease every second; the leader starts the due jobs, each in a
    task of its own, so a long job neither keeps it from renewing the lease nor delays the
    other jobs. A leader that finds its lease gone (paused past it) stops its running jobs:
    the new leader runs jobs now."""
    lease = Lease(c.kv, c.settings.SCHEDULER_LEASE_SECONDS)
    due = DueJobs(c)
    try:
        while not stop.is_set():
            if await lease.hold():
                await due.start()
            elif any(not task.done() for task in due.running.values()):
                log.warning("scheduler lease lost; its running jobs stopped")
                await due.stop()
            try:
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
            except TimeoutError:
                pass
    finally:
        await due.stop()
        await lease.release()
