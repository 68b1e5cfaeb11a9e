"""The scheduler as its own processes (`eddy scheduler`), judged by a job's effect: the
queue monitor's alert mails while the indexing backlog is past its threshold (no indexing
processor runs here, so the backlog stays). One leader at a time: the leader SIGKILLed, the
standby takes over and the alerts go on. A scheduler stopped for several intervals fires
the missed tick once when it starts again, not once per missed interval."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from config import Settings
from schemas.mail import events as mail_events
from tests.harness import Node, eventually, node_settings, running_node

ROOT = Path(__file__).resolve().parents[2]


def spawn_scheduler(settings: Settings, beat: bool = False) -> subprocess.Popen[bytes]:
    """`eddy scheduler`, or `eddy` with MODE=beat as Dify's entrypoint starts Celery beat."""
    command = [sys.executable, "-m", "cli"] + ([] if beat else ["scheduler"])
    env = settings.as_env(LOG_LEVEL="WARNING", **({"MODE": "beat"} if beat else {}))
    return subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    process.send_signal(sig)
    process.wait(timeout=30)


def alerts(node: Node) -> int:
    return sum(1 for e in node.container.store.read_from(0, 100_000)
               if isinstance(e.payload, mail_events.MailRequested)
               and e.payload.template == "queue_monitor_alert")


@asynccontextmanager
async def backlogged_node(postgres: EmbeddedPostgres, database: str, redis_url: str,
                          interval_minutes: float) -> AsyncIterator[tuple[Node, Settings]]:
    """A node whose indexing backlog is past the monitor's threshold, the monitor on."""
    settings = node_settings(postgres, database, redis_url,
                             ENABLE_DATASETS_QUEUE_MONITOR=True, QUEUE_MONITOR_THRESHOLD=1,
                             QUEUE_MONITOR_ALERT_EMAILS="ops@example.com",
                             QUEUE_MONITOR_INTERVAL=interval_minutes, SCHEDULER_LEASE_SECONDS=3)
    async with running_node(settings, roles=["relay", "commands", "projections"]) as node:
        auth = await node.setup_and_login()
        token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
        key = {"Authorization": f"Bearer {token['token']}"}
        dataset = (await node.client.post("/v1/datasets", headers=key, json={
            "name": "Backlog", "indexing_technique": "high_quality"})).json()
        r = await node.client.post(
            f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
            json={"name": "waiting", "text": "Harbour opening hours.",
                  "process_rule": {"mode": "automatic"}})
        assert r.status_code == 200, r.text
        yield node, settings


async def more_alerts_than(node: Node, count: int) -> Callable[[], object]:
    async def check() -> bool:
        return alerts(node) > count
    return check


async def test_a_standby_scheduler_takes_over_when_the_leader_is_killed(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
) -> None:
    async with backlogged_node(postgres, fresh_database("failover"), redis_url,
                               interval_minutes=0.05) as (node, settings):
        leader = spawn_scheduler(settings)
        standby = None
        try:
            await eventually(await more_alerts_than(node, 0), timeout=60)
            standby = spawn_scheduler(settings, beat=True)
            await asyncio.sleep(2)  # the standby is up, asking for the lease in vain
            stop(leader, signal.SIGKILL)
            after_kill = alerts(node)
            # the lease lapses (3 s), the standby leads: the monitor's alerts go on
            await eventually(await more_alerts_than(node, after_kill + 1), timeout=60)
        finally:
            for process in (leader, standby):
                if process is not None and process.poll() is None:
                    stop(process, signal.SIGKILL)


async def _missed_tick_caught_up_once(postgres: EmbeddedPostgres, database: str,
                                      redis_url: str, interval_minutes: float,
                                      stopped_intervals: int) -> None:
    async with backlogged_node(postgres, database, redis_url,
                               interval_minutes) as (node, settings):
        scheduler = spawn_scheduler(settings)
        try:
            await eventually(await more_alerts_than(node, 0), timeout=60)
            stop(scheduler)  # a clean stop: the lease released, the last run kept
            before = alerts(node)
            await asyncio.sleep(interval_minutes * 60 * stopped_intervals)
            assert alerts(node) == before  # nobody ran it meanwhile
            scheduler = spawn_scheduler(settings)
            await eventually(await more_alerts_than(node, before), timeout=60)
            # caught up once at start; the next run waits a whole interval from it
            await asyncio.sleep(interval_minutes * 60 / 3)
            assert alerts(node) == before + 1
        finally:
            if scheduler.poll() is None:
                stop(scheduler, signal.SIGKILL)


async def test_a_scheduler_stopped_past_its_interval_fires_the_missed_tick_once(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
) -> None:
    await _missed_tick_caught_up_once(postgres, fresh_database("missed"), redis_url,
                                      interval_minutes=0.25, stopped_intervals=3)


@pytest.mark.slow
async def test_a_scheduler_stopped_for_three_minutes_fires_the_missed_tick_once(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
) -> None:
    await _missed_tick_caught_up_once(postgres, fresh_database("missed3"), redis_url,
                                      interval_minutes=1, stopped_intervals=3)
