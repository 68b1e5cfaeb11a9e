"""The statistics read model is a projection of its own, operated like the console's: its
consumer group shows in `eddy groups`, /metrics and /status with its lag; `eddy projections
rebuild statistics` builds statistics_v2 from the event store equal to the live
statistics_v1 (every row), reads switch to it and roll back, and the console projection
never notices (its versions, its schemas, what reads use)."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from uuid import UUID

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from projections import versions as pv
from projections.layout import read_tables
from projections.statistics import tables as stat
from projections.tables import PROJECTION_NAME
from tests.chat import Chat, app_with_key, chat_node
from tests.harness import Node, eventually, running_node
from tests.integration.test_cli_operations import eddy, json_lines
from tests.workflow_runs import Step, record_run

STATISTICS = stat.STATISTICS
GROUP = f"projection.{STATISTICS}"
TABLES = [t.name for t in read_tables(stat.metadata)]
RUN_STEP = Step("llm", node_type="llm", usage={"total_tokens": 7})


async def _groups() -> dict[str, dict[str, Any]]:
    code, out, err = await eddy("groups", "--json", "--interval", "0.2")
    assert code == 0, err
    return {g["group"]: g for g in json_lines(out)}


async def _metric_lags(node: Node) -> tuple[dict[str, float], dict[str, float]]:
    """(lag per consumer group, lag per projection version) as /metrics shows them."""
    response = await node.client.get("/metrics")
    assert response.status_code == 200
    samples = [s for f in text_string_to_metric_families(response.text) for s in f.samples]
    return ({s.labels["group"]: s.value for s in samples if s.name == "eddy_group_lag_events"},
            {s.labels["projection"]: s.value for s in samples
             if s.name == "eddy_projection_lag_events"})


async def _status(node: Node, auth: dict[str, str]) -> dict[str, Any]:
    response = await node.client.get("/status.json", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _statistics_settled(node: Node) -> bool:
    """Every maintained statistics version has applied everything in the store."""
    lags = await pv.maintained_lags(node.container.engine,
                                    [node.container.projections[STATISTICS]])
    return bool(lags) and not any(lags.values())


async def test_the_statistics_group_shows_its_lag_in_groups_metrics_and_status(
        settings: Settings) -> None:
    # Once running, the group is there with nothing to do.
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        app_id, _ = await app_with_key(node, auth, mode="workflow", name="Counted")
        record_run(node, app_id, steps=(RUN_STEP,))

        async def idle() -> dict[str, Any] | None:
            group = (await _groups()).get(GROUP)
            return group if group and group["lag"] == 0 and group["handled"] > 0 else None
        group = await eventually(idle, timeout=30, interval=0.5)
        assert set(group["topics"]) == set(node.container.projections[STATISTICS].topics)
        assert {"events.conversation", "events.workflow"} <= set(group["topics"])

    # Projections stopped: what the relay publishes meanwhile is the group's lag, everywhere.
    async with running_node(settings, roles=["relay"]) as node:
        before = node.container.store.max_position()
        runs = [record_run(node, app_id, user=f"user {i}", steps=(RUN_STEP,)) for i in range(3)]
        appended = node.container.store.max_position() - before  # all on events.workflow

        async def relayed() -> dict[str, Any] | None:
            group = (await _groups()).get(GROUP)
            return group if group and group["lag"] == appended else None
        await eventually(relayed, timeout=30, interval=0.5)
        groups, versions = await _metric_lags(node)
        assert groups[GROUP] == appended
        assert versions[f"{STATISTICS}_v1"] == appended
        status = await _status(node, auth)
        shown = {g["group"]: g for g in status["groups"]}
        assert shown[GROUP]["lag"] == appended
        assert {(p["schema"], p["lag"]) for p in status["projections"]
                if p["projection"] == STATISTICS} == {(f"{STATISTICS}_v1", appended)}
        panel = (await node.client.get("/status/panel", headers=auth)).text
        assert re.search(rf"<td>{re.escape(GROUP)}</td><td><span [^>]*>{appended:,}</span>",
                         panel)
        code, out, _ = await eddy("groups")  # the table for people
        assert code == 0 and re.search(rf"^{re.escape(GROUP)}\s.*\b{appended}\b", out, re.M)

    # Running again: the backlog is applied, the lag is gone, the runs are counted.
    async with running_node(settings) as node:
        async def caught_up() -> bool:
            group = (await _groups()).get(GROUP)
            return bool(group and group["lag"] == 0 and group["members"])
        await eventually(caught_up, timeout=30, interval=0.5)
        await eventually(lambda: _statistics_settled(node), timeout=30)
        groups, versions = await _metric_lags(node)
        assert groups[GROUP] == 0 and versions[f"{STATISTICS}_v1"] == 0
        counted = await _rows(node.container.engine, f"{STATISTICS}_v1", "stat_runs")
        assert {UUID(str(r["run_id"])) for r in counted} >= set(runs)


async def _rows(engine: AsyncEngine, schema: str, table: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(f'SELECT * FROM "{schema}"."{table}"'))).mappings()
        return [dict(r) for r in rows]


def _comparable(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((tuple(sorted(r.items())) for r in rows), key=repr)


async def _same_rows(node: Node, a: str, b: str) -> dict[str, int]:
    """Rows per table; fails where the two versions' rows differ."""
    counts = {}
    for table in TABLES:
        left = await _rows(node.container.engine, a, table)
        assert _comparable(left) == _comparable(
            await _rows(node.container.engine, b, table)), f"{a} and {b} differ in {table}"
        counts[table] = len(left)
    return counts


async def _console(node: Node) -> tuple[list[pv.ProjectionVersion], set[str]]:
    """The console's versions and every version schema in the database."""
    async with node.container.engine.connect() as conn:
        schemas = set((await conn.execute(text(
            "SELECT schema_name FROM information_schema.schemata"
            " WHERE schema_name ~ '_v[0-9]+$'"))).scalars())
    return await pv.list_versions(node.container.engine, PROJECTION_NAME), schemas


class Traffic:
    """Chat messages (some liked) and workflow runs until stopped."""

    def __init__(self, chat: Chat, workflow_app: str) -> None:
        self.chat, self.workflow_app = chat, workflow_app
        self.stop = asyncio.Event()
        self.messages = 0
        self.runs = 0
        self.failures: list[str] = []

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.one(f"user {self.messages % 3}")

    async def one(self, user: str) -> None:
        answer = await self.chat.send(f"question {self.messages}", user=user)
        if answer.status_code != 200:
            self.failures.append(f"chat: {answer.status_code} {answer.text[:200]}")
            return
        self.messages += 1
        if self.messages % 2:
            async def like() -> Any:
                liked = await self.chat.node.client.post(
                    f"/v1/messages/{answer.json()['message_id']}/feedbacks",
                    headers=self.chat.key, json={"rating": "like", "user": user})
                # 404 until the console read model has the message (the answer may come first)
                return liked if liked.status_code != 404 else None
            liked = await eventually(like, timeout=20)
            if liked.status_code != 200:
                self.failures.append(f"feedback: {liked.status_code} {liked.text[:200]}")
        record_run(self.chat.node, self.workflow_app, user=user, steps=(RUN_STEP,))
        self.runs += 1


async def test_rebuild_statistics_equals_live_switches_rolls_back_and_leaves_console_alone(
        settings: Settings) -> None:
    async with chat_node(settings) as chat:
        node, c = chat.node, chat.node.container
        workflow_app, _ = await app_with_key(node, chat.auth, mode="workflow", name="Runs")
        traffic = Traffic(chat, workflow_app)
        for user in ("ann", "bob", "cy"):
            await traffic.one(user)
        console_before, schemas_before = await _console(node)

        writing = asyncio.create_task(traffic.run())  # the rebuild catches up with these
        try:
            code, out, err = await eddy("projections", "rebuild", STATISTICS)
        finally:
            traffic.stop.set()
            await writing
        assert code == 0, err
        assert f"{STATISTICS}_v2 (layout 1) is live" in out, out
        assert not traffic.failures, traffic.failures[:3]

        await eventually(lambda: _statistics_settled(node), timeout=30)
        counts = await _same_rows(node, f"{STATISTICS}_v1", f"{STATISTICS}_v2")
        windows = await _rows(c.engine, f"{STATISTICS}_v2", "stat_windows")
        assert sum(w["messages"] for w in windows) == traffic.messages
        assert sum(w["likes"] for w in windows) == (traffic.messages + 1) // 2
        assert sum(w["runs"] for w in windows) == traffic.runs
        assert counts["stat_messages"] == traffic.messages and counts["stat_runs"] == traffic.runs

        # The console is untouched: same versions, no schema of its own added.
        console_after, schemas_after = await _console(node)
        assert console_after == console_before
        assert schemas_after == schemas_before | {f"{STATISTICS}_v2"}
        code, out, _ = await eddy("projections", "list", "--json")
        assert sorted((v["schema"], v["state"], v["active"]) for v in json_lines(out)) == [
            ("console_v1", "live", True), (f"{STATISTICS}_v1", "live", True),
            (f"{STATISTICS}_v2", "live", False)]

        # Switch: statistics reads use v2, the console's still v1; both versions keep up.
        code, out, err = await eddy("projections", "switch", STATISTICS, "2")
        assert code == 0 and f"reads now use {STATISTICS}_v2" in out, err
        await eventually(lambda: asyncio.sleep(0, c.read_models.active(STATISTICS).schema
                                               == f"{STATISTICS}_v2"), timeout=5)
        assert c.read_models.active(PROJECTION_NAME).schema == "console_v1"
        await traffic.one("dee")
        await eventually(lambda: _statistics_settled(node), timeout=30)
        counts = await _same_rows(node, f"{STATISTICS}_v1", f"{STATISTICS}_v2")
        assert counts["stat_messages"] == traffic.messages

        # Rollback to v1, then v2 goes; the console never moved.
        code, out, err = await eddy("projections", "rollback", STATISTICS)
        assert code == 0 and f"reads now use {STATISTICS}_v1" in out, err
        await eventually(lambda: asyncio.sleep(0, c.read_models.active(STATISTICS).schema
                                               == f"{STATISTICS}_v1"), timeout=5)
        code, out, err = await eddy("projections", "drop", STATISTICS, "2")
        assert code == 0 and f"dropped {STATISTICS}_v2" in out, err
        console_end, schemas_end = await _console(node)
        assert console_end == console_before and schemas_end == schemas_before
