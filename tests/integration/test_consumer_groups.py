"""Consumer-group scaling on real servers: worker processes joining and leaving a group
mid-stream move partitions with nothing lost or doubled, `eddy groups` shows who owns what
and how far behind the event store each group is, and `eddy topics ensure` grows a topic the
workers refuse to start on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY, TopicsTooSmall, build, topic_specs
from commands.platform.aggregates import App
from config import Settings, load_settings
from events.envelope import Envelope
from projections.tables import PROJECTION_NAME
from projections.versions import maintained_lags
from schemas.platform.events import AppCreated
from tests.harness import eventually, node_settings, running_node
from tests.integration.conftest import operator_env
from tests.integration.test_cli_operations import eddy, json_lines

ROOT = Path(__file__).resolve().parents[2]
GROUP = f"projection.{PROJECTION_NAME}"
APPS = 1500


def spawn_worker(env: dict[str, str], member: str,
                 concurrency: int = 1) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "cli", "worker", "--roles", "projections",
                             "--member", member, "--concurrency", str(concurrency)], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def groups() -> dict[str, dict[str, Any]]:
    code, out, err = await eddy("groups", "--json", "--interval", "0.5")
    assert code == 0, err
    return {g["group"]: g for g in json_lines(out)}


async def members_are(names: set[str], partitions: list[str]) -> dict[str, Any] | None:
    """The group once exactly these members split these partitions evenly."""
    group = (await groups()).get(GROUP)
    if group is None or set(group["members"]) != names or partitions_of(group) != partitions:
        return None
    shares = [len(p) for p in group["members"].values()]
    return group if max(shares) - min(shares) <= 1 else None


def partitions_of(group: dict[str, Any]) -> list[str]:
    return sorted(p for parts in group["members"].values() for p in parts)


async def test_workers_joining_and_leaving_mid_stream_lose_and_double_nothing(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = operator_env(monkeypatch, node_settings(
        postgres, fresh_database("groups"), redis_url, EVENT_PARTITIONS=6))
    env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
    expected = sorted(f"{s.name}:{p}" for s in topic_specs(settings)
                      if s.name in ASSEMBLY.projections[PROJECTION_NAME].topics
                      for p in range(s.partitions))
    assert len(expected) % 6 == 0 and len(expected) >= 6  # six per topic
    async with running_node(settings, roles=["relay"]) as node:
        workers = {m: spawn_worker(env, m) for m in ("w1", "w2", "w3")}
        try:
            # each partition owned by exactly one member, a third each
            await eventually(lambda: members_are({"w1", "w2", "w3"}, expected), timeout=90,
                             interval=1.0)

            tenant, actor = uuid.uuid4(), uuid.uuid4()
            app_ids = [uuid.uuid4() for _ in range(APPS)]

            async def write(ids: list[uuid.UUID]) -> None:
                for start in range(0, len(ids), 50):  # a steady stream, 50 at a time
                    await asyncio.to_thread(node.container.store.append, [Envelope.new(
                        AppCreated(name=f"app {i}", mode="chat", created_by=actor),
                        aggregate_type=App.type_name, aggregate_id=i, aggregate_version=1,
                        tenant_id=tenant, correlation_id=i, causation_id=i)
                        for i in ids[start:start + 50]])
                    await asyncio.sleep(0.05)

            writing = asyncio.create_task(write(app_ids))
            await eventually(lambda: _projected_at_least(node, 300), timeout=60)
            workers["w1"].send_signal(signal.SIGTERM)  # one leaves mid-stream …
            assert await asyncio.to_thread(workers["w1"].wait, 30) == 0
            # … and another joins, with two members of the group in its process
            workers["w4"] = spawn_worker(env, "w4", concurrency=2)
            await writing

            seen: dict[str, Any] = {}

            async def caught_up() -> dict[str, Any] | None:
                seen["groups"] = await groups()
                seen["lags"] = await maintained_lags(node.container.engine,
                                                     node.container.projections.values())
                group = await members_are({"w2", "w3", "w4.1", "w4.2"}, expected)
                return (group if group and group["lag"] == 0 and not any(seen["lags"].values())
                        else None)

            try:
                group = await eventually(caught_up, timeout=120, interval=1.0)
            except AssertionError as exc:
                raise AssertionError(f"not caught up: {seen}") from exc
            assert group["oldest_unacked_age_seconds"] is None
            assert group["handled"] >= APPS

            async with node.container.engine.connect() as conn:
                rows = (await conn.execute(text(
                    "SELECT id, name FROM console_v1.apps WHERE tenant_id = :t"),
                    {"t": tenant})).all()
                versions = (await conn.execute(text(
                    "SELECT version, count(*) FROM projection_tracking WHERE projection = :p"
                    " AND aggregate_id = ANY(:ids) GROUP BY version"),
                    {"p": f"{PROJECTION_NAME}_v1", "ids": app_ids})).all()
            assert sorted((r.id, r.name) for r in rows) == sorted(
                (i, f"app {i}") for i in app_ids)
            assert versions == [(1, APPS)]

            code, out, _ = await eddy("groups")  # the table for people
            assert code == 0 and GROUP in out and "w4.2" in out and "w1 " not in out
        finally:
            for worker in workers.values():
                if worker.poll() is None:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait()


async def _projected_at_least(node: Any, count: int) -> bool:
    async with node.container.engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT count(*) FROM console_v1.apps"))).scalar() or 0) >= count


async def test_a_topic_with_too_few_partitions_is_refused_until_topics_ensure_grows_it(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_node(settings, roles=[]):
        pass  # topics created with EVENT_PARTITIONS=2
    more = operator_env(monkeypatch, load_settings(**{
        **settings.model_dump(), "TOPIC_PARTITIONS": "events.platform=4"}))
    with pytest.raises(TopicsTooSmall, match=r"events.platform has 2, configured 4.*"
                                             r"`eddy topics ensure`"):
        await build(more)
    code, _, err = await eddy("worker", "--roles", "relay")
    assert code == 2 and "eddy topics ensure" in err

    code, out, err = await eddy("topics", "ensure", "--json")
    assert code == 0, err
    actions = {t["topic"]: t for t in json_lines(out)}
    assert actions["events.platform"] == {"topic": "events.platform", "partitions": 4,
                                          "action": "grown from 2"}
    assert actions["events.knowledge"]["action"] == "ok"
    container = await build(more)  # starts now
    try:
        assert (await container.bus.topic_partitions(["events.platform"])) == {
            "events.platform": 4}
    finally:
        await container.close()
    code, out, _ = await eddy("topics", "ensure")
    assert code == 0 and "grown" not in out
