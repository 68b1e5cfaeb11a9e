"""Schedule triggers with real `eddy scheduler` processes (slow: each waits for real minutes):
two schedulers on a per-minute schedule start one run per minute, the leader killed on the
way; a schedule whose scheduler was stopped past its ticks fires the latest tick once when
one starts again, not each tick it missed. (The short forms, firing at chosen times, are in
tests/e2e/test_workflow_triggers.py.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select

from adapters.embedded.postgres import EmbeddedPostgres
from config import Settings
from projections.workflow.tables import workflow_schedules
from tests.chat import app_with_key
from tests.e2e.test_workflow_triggers import EVERY_MINUTE, UNSCHEDULED, runs_of
from tests.harness import Node, eventually, node_settings, running_node
from tests.workflows import publish_in_console

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Schedulers:
    """`eddy scheduler` processes of the node's settings."""

    def __init__(self, settings: Settings) -> None:
        self.env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
        self.started: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", "cli", "scheduler"], env=self.env,
                                   cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        self.started.append(process)
        return process


@contextmanager
def schedulers(settings: Settings) -> Iterator[Schedulers]:
    running = Schedulers(settings)
    try:
        yield running
    finally:
        for process in running.started:
            process.kill()
            process.wait()


async def published_schedule(node: Node) -> tuple[str, datetime]:
    """A per-minute schedule's app and its first tick."""
    auth = await node.setup_and_login()
    app_id, _ = await app_with_key(node, auth, mode="workflow", name="Minutely")
    await publish_in_console(node, auth, app_id, EVERY_MINUTE)

    async def first_tick() -> datetime | None:
        async with node.container.engine.connect() as conn:
            return await conn.scalar(select(workflow_schedules.c.next_fire_at).where(
                workflow_schedules.c.app_id == UUID(app_id)))

    return app_id, await eventually(first_tick)


async def ticks_run(node: Node, app_id: str) -> list[datetime]:
    """The tick of each run the app has (its `current_time` input), in UTC."""
    return [datetime.fromisoformat(r["inputs"]["current_time"]).astimezone(UTC)
            for r in await runs_of(node, app_id)]


def at_least(node: Node, app_id: str, count: int) -> Callable[[], object]:
    async def check() -> list[datetime] | None:
        ticks = await ticks_run(node, app_id)
        return ticks if len(ticks) >= count else None
    return check


async def test_two_schedulers_start_one_run_per_minute_for_three_minutes(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
        redis_url: str) -> None:
    settings = node_settings(postgres, fresh_database("schedtwo"), redis_url)
    async with running_node(settings, roles=UNSCHEDULED) as node:
        app_id, first = await published_schedule(node)
        with schedulers(settings) as running:
            leader, _ = running.spawn(), running.spawn()
            await eventually(at_least(node, app_id, 1), timeout=120)
            leader.kill()  # the other takes over (if it led already, nothing changes)
            ticks = await eventually(at_least(node, app_id, 3), timeout=200)
        assert sorted(ticks) == [first + timedelta(minutes=i) for i in range(len(ticks))]


async def test_a_scheduler_stopped_past_ticks_fires_the_latest_once(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
        redis_url: str) -> None:
    settings = node_settings(postgres, fresh_database("schedlate"), redis_url)
    async with running_node(settings, roles=UNSCHEDULED) as node:
        app_id, first = await published_schedule(node)
        # no scheduler while three ticks go by
        await asyncio.sleep((first + timedelta(minutes=2, seconds=5)
                             - datetime.now(UTC)).total_seconds())
        with schedulers(settings) as running:
            running.spawn()
            [tick] = await eventually(at_least(node, app_id, 1), timeout=60)
            await asyncio.sleep(20)  # more passes than one: the missed ticks stay unfired
            ticks = await ticks_run(node, app_id)
        assert tick >= first + timedelta(minutes=2)  # the latest tick, not the first missed
        assert not {first, first + timedelta(minutes=1)} & set(ticks)
        assert len(ticks) == len(set(ticks)) <= 2  # one more only if a new minute began
