"""The scheduler's decisions: which job is due, a missed tick caught up once, a crontab job's
first tick, the lease held by one scheduler at a time, switches from the settings."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from adapters.kv.memory import MemoryKeyValueStore
from bootstrap import ASSEMBLY
from config import Settings
from workers.declarations import Job
from workers.scheduler import LEADER_KEY, DueJobs, Lease, last_run_key, run_scheduler
from workflow_graph.cron import Cron

RUNS = "runs"


async def count_run(*, kv: MemoryKeyValueStore) -> None:
    await kv.set(RUNS, str(int(await kv.get(RUNS) or 0) + 1))


@dataclass
class Container:
    jobs: dict[str, Job]
    settings: Settings = field(default_factory=lambda: Settings(SECRET_KEY="k" * 32))
    kv: MemoryKeyValueStore = field(default_factory=MemoryKeyValueStore)

    async def runs(self) -> int:
        return int(await self.kv.get(RUNS) or 0)


async def run_due(due: DueJobs) -> None:
    """Starts the due jobs and waits for them to end."""
    await due.start()
    await asyncio.gather(*due.running.values())


async def test_an_interval_job_runs_at_once_then_when_its_interval_passed() -> None:
    c = Container({"count": Job("count", 60.0, count_run)})
    due = DueJobs(c)  # type: ignore[arg-type]
    await run_due(due)
    await run_due(due)
    assert await c.runs() == 1
    await c.kv.set(last_run_key("count"), repr(time.time() - 61))
    await run_due(due)
    assert await c.runs() == 2


@pytest.mark.parametrize("schedule", [60.0, Cron("*/1 * * * *")])
async def test_a_job_stopped_for_many_intervals_runs_once(schedule: float | Cron) -> None:
    c = Container({"count": Job("count", schedule, count_run)})
    # the last run ten intervals ago: a scheduler stopped for a while, or a new leader
    await c.kv.set(last_run_key("count"), repr(time.time() - 600))
    due = DueJobs(c)  # type: ignore[arg-type]
    await run_due(due)
    await run_due(due)
    assert await c.runs() == 1


async def test_a_crontab_job_never_run_waits_for_its_next_tick() -> None:
    c = Container({"count": Job("count", Cron("0 4 * * *"), count_run)})
    await run_due(DueJobs(c))  # type: ignore[arg-type]
    assert await c.runs() == 0
    assert await c.kv.get(last_run_key("count")) is not None


async def test_a_failed_job_is_not_recorded_as_run() -> None:
    async def fail(*, kv: MemoryKeyValueStore) -> None:
        raise RuntimeError("boom")

    c = Container({"fail": Job("fail", 60.0, fail)})
    await run_due(DueJobs(c))  # type: ignore[arg-type]
    assert await c.kv.get(last_run_key("fail")) is None


def test_switched_off_jobs_are_not_scheduled() -> None:
    off = Settings(SECRET_KEY="k" * 32)
    on = Settings(SECRET_KEY="k" * 32, ENABLE_CLEAN_MESSAGES=True,
                  ENABLE_CLEAN_UNUSED_DATASETS_TASK=True, ENABLE_DATASETS_QUEUE_MONITOR=True,
                  QUEUE_MONITOR_INTERVAL=5, CELERY_BEAT_SCHEDULER_TIME=2)
    dify_jobs = ["clean_messages", "clean_unused_datasets_task", "datasets-queue-monitor"]
    assert all(ASSEMBLY.jobs[name].schedule_in(off) is None for name in dify_jobs)
    assert ASSEMBLY.jobs["clean_messages"].schedule_in(on) == Cron("0 4 */2 * *")
    assert ASSEMBLY.jobs["clean_unused_datasets_task"].schedule_in(on) == Cron("0 3 */2 * *")
    assert ASSEMBLY.jobs["datasets-queue-monitor"].schedule_in(on) == 300.0
    poller = ASSEMBLY.jobs["poll_workflow_schedules"]
    assert poller.schedule_in(off) == 15.0  # on by default, as Dify's
    assert poller.schedule_in(Settings(SECRET_KEY="k" * 32,
                                       ENABLE_WORKFLOW_SCHEDULE_POLLER_TASK=False)) is None


async def test_a_slow_job_does_not_delay_a_fast_ones_runs() -> None:
    slow_started, slow_ends = [], asyncio.Event()

    async def slow_job(*, kv: MemoryKeyValueStore) -> None:
        slow_started.append(1)
        await slow_ends.wait()

    # the nightly clean-up still running while the per-tick poller is due again and again
    c = Container({"slow": Job("slow", 0.0, slow_job), "fast": Job("fast", 0.0, count_run)})
    due = DueJobs(c)  # type: ignore[arg-type]
    for _ in range(3):
        await due.start()
        await due.running["fast"]
    assert await c.runs() == 3
    assert len(slow_started) == 1  # still running: not started again
    assert await c.kv.get(last_run_key("slow")) is None
    slow_ends.set()
    await due.running["slow"]
    assert await c.kv.get(last_run_key("slow")) is not None  # recorded when it finished
    await due.start()
    await asyncio.gather(*due.running.values())
    assert len(slow_started) == 2


async def test_one_lease_holder_at_a_time() -> None:
    kv = MemoryKeyValueStore()
    first, second = Lease(kv, 10), Lease(kv, 10)
    assert await first.hold() and not await second.hold()
    assert await first.hold()  # renewed by its holder
    await first.release()
    assert await second.hold() and not await first.hold()
    await first.release()  # a former holder neither releases nor renews another's lease
    assert await kv.get(LEADER_KEY) == second.holder


async def test_a_leader_that_lost_its_lease_stops_its_running_job() -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def long_job(*, kv: MemoryKeyValueStore) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    c = Container({"long": Job("long", 60.0, long_job)})
    stop = asyncio.Event()
    scheduler = asyncio.create_task(run_scheduler(c, stop))  # type: ignore[arg-type]
    await asyncio.wait_for(started.wait(), 10)
    await c.kv.set(LEADER_KEY, "another scheduler")  # its lease lapsed and was taken
    await asyncio.wait_for(stopped.wait(), 10)
    assert await c.kv.get(last_run_key("long")) is None  # not recorded: it runs again
    stop.set()
    await scheduler
