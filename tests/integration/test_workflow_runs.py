"""Workflow run read models on Postgres: run histories recorded through the WorkflowRun
aggregate (tests/workflow_runs.py) on a running node (Redis bus, two partitions), read
through the Service API (against Dify's spec) and the console, then rebuilt into a new
version (`eddy projections rebuild`'s code) that answers the same, row for row."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from config import Settings
from contexts.workflow import RUNS
from projections import versions as pv
from projections.rebuild import rebuild
from projections.registry import NUL_SHOWN_AS
from projections.statistics.tables import STATISTICS
from projections.tables import PROJECTION_NAME
from tests.chat import app_with_key
from tests.harness import Node, eventually, running_node
from tests.integration.test_cli_operations import eddy, json_lines
from tests.integration.test_replay import replayed
from tests.spec import validate
from tests.workflow_runs import Step, Workflow, record_run
from tests.workflows import Gate, edge, end_outputs, executors_on, graph, graph_node, publish

TABLES = ("workflow_runs", "workflow_node_executions", "workflow_app_logs")
STEPS = (Step("start", "start"), Step("fetch", "http-request", retries=("503", "502"),
                                      outputs={"status_code": 200}),
         Step("llm", "llm", outputs={"text": "Sunny"}, usage={"total_tokens": 7}))


async def _rows(node: Node, schema: str, table: str) -> list[tuple[Any, ...]]:
    async with node.container.read_models.database.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(
            f'SELECT * FROM "{schema}"."{table}" ORDER BY id'))).all()]


async def _answers(wf: Workflow, runs: list[Any]) -> list[Any]:
    """What the Service API and the console show of these runs."""
    answers = [(await wf.logs(limit=100)).json(), (await wf.logs(keyword="bergen")).json(),
               (await wf.console("/workflow-runs", limit=100)).json(),
               (await wf.console("/workflow-app-logs", limit=100)).json()]
    for run_id in runs:
        answers += [(await wf.detail(run_id)).json(),
                    (await wf.console(f"/workflow-runs/{run_id}")).json(),
                    (await wf.console(f"/workflow-runs/{run_id}/node-executions")).json()]
    return answers


async def test_runs_projected_read_and_rebuilt_alike(settings: Settings) -> None:
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        app_id, key = await app_with_key(node, auth, mode="workflow", name="Weather")
        wf = Workflow(node, auth, app_id, key)
        # recorded together: two partitions apply them concurrently
        runs = [record_run(node, app_id, user=f"user-{i}", steps=STEPS,
                           inputs={"city": "Bergen" if i == 3 else "Oslo"},
                           outputs={"answer": f"Sunny {i}"}) for i in range(10)]
        runs.append(record_run(node, app_id, user="nul", inputs={"q": "a\x00b"},
                               steps=(Step("code", error="bad \x00 byte"),)))
        runs.append(record_run(node, app_id, debugging=True, steps=STEPS))
        for run_id in runs:
            await wf.projected(run_id)

        async with node.container.read_models.database.connect() as conn:
            numbers = (await conn.execute(text(
                "SELECT sequence_number FROM console_v1.workflow_runs WHERE app_id = :a"
                " ORDER BY created_at, id"), {"a": app_id})).scalars().all()
        assert numbers == list(range(1, 13))

        detail = (await wf.detail(runs[0])).json()
        validate("WorkflowRunDetailResponse", detail)
        assert (detail["status"], detail["outputs"], detail["total_tokens"]) == (
            "succeeded", {"answer": "Sunny 0"}, 7)
        poisoned = (await wf.detail(runs[10])).json()
        validate("WorkflowRunDetailResponse", poisoned)
        assert (poisoned["status"], poisoned["inputs"], poisoned["error"]) == (
            "failed", f'{{"q": "a{NUL_SHOWN_AS}b"}}',
            f"Node Code run failed: bad {NUL_SHOWN_AS} byte")
        logs = (await wf.logs(limit=100)).json()
        validate("WorkflowLogsResponse", logs)
        assert logs["total"] == 11  # the debugging run is no log entry
        found = (await wf.logs(keyword="bergen")).json()  # in jsonb inputs, any case
        assert [e["workflow_run"]["id"] for e in found["data"]] == [str(runs[3])]
        executions = (await wf.console(f"/workflow-runs/{runs[11]}/node-executions")).json()
        assert [(e["node_id"], e["status"]) for e in executions["data"]] == [
            ("llm", "succeeded"), ("fetch", "succeeded"), ("fetch", "retry"), ("fetch", "retry"),
            ("start", "succeeded")]
        before = await _answers(wf, runs)

        c = node.container
        result = await rebuild(c.read_models.database, settings.database_dsn(), c.store,
                               c.event_types, c.projections[PROJECTION_NAME])
        assert {t: result.rows[t] for t in TABLES} == {
            "workflow_runs": 12, "workflow_node_executions": 3 * 11 + 2 * 11 + 1,
            "workflow_app_logs": 11}
        for table in TABLES:
            assert await _rows(node, "console_v2", table) == \
                await _rows(node, "console_v1", table), table
        await pv.switch(c.read_models.database, PROJECTION_NAME, 2)
        await eventually(lambda: asyncio.sleep(0, c.read_models.active().schema
                                               == "console_v2"), timeout=5)
        assert await _answers(wf, runs) == before


async def test_eddy_events_list_show_and_replay_an_apps_runs(settings: Settings) -> None:
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        app_id, key = await app_with_key(node, auth, mode="workflow", name="Weather")
        other_app, _ = await app_with_key(node, auth, mode="workflow", name="Other")
        wf = Workflow(node, auth, app_id, key)
        runs = [record_run(node, app_id, steps=STEPS, outputs={"answer": "Sunny"}),
                record_run(node, app_id, steps=(Step("code", error="boom"),))]
        theirs = record_run(node, other_app)
        for run_id in runs:
            await wf.projected(run_id)

        code, out, err = await eddy("events", "list", "--aggregate", str(runs[0]), "--json")
        assert code == 0, err
        history = json_lines(out)
        assert [e["type"] for e in history] == [
            "WorkflowRunStarted", "WorkflowNodeStarted", "WorkflowNodeSucceeded",
            "WorkflowNodeStarted", "WorkflowNodeRetried", "WorkflowNodeRetried",
            "WorkflowNodeSucceeded", "WorkflowNodeStarted", "WorkflowNodeSucceeded",
            "WorkflowRunSucceeded"]
        code, out, err = await eddy("events", "show", str(history[-1]["position"]), "--json")
        assert code == 0, err
        assert json_lines(out)[0]["payload"]["outputs"] == {"answer": "Sunny"}

        # an app's events: its own and its runs' (every event of a run, though only the
        # first names the app), no other app's
        code, out, err = await eddy("events", "list", "--app", app_id, "--limit", "1000",
                                    "--json")
        assert code == 0, err
        listed = json_lines(out)
        aggregates = {e["aggregate_id"] for e in listed}
        assert {str(r) for r in runs} | {app_id} <= aggregates and str(theirs) not in aggregates
        assert len([e for e in json_lines(out) if e["aggregate_id"] == str(runs[0])]) == 10

        code, out, err = await eddy("events", "replay", "--app", app_id, "--type",
                                    "WorkflowRunStarted", "--republish", "--dry-run", "--json")
        assert code == 0, err
        assert json_lines(out)[0]["by_type"] == {"WorkflowRunStarted": 2}

        # replayed, the runs' events change nothing: the projection skips what it applied,
        # and nothing is recorded
        code, out, err = await eddy("events", "replay", "--app", app_id, "--republish",
                                    "--dry-run", "--json")
        assert code == 0, err
        plan = json_lines(out)[0]
        receiving = plan["by_group"]
        # the console projection follows every event; the statistics projection the runs'
        # (the workflow topic), not the app's own (the platform topic)
        run_events = len([e for e in listed if e["aggregate_id"] in {str(r) for r in runs}])
        assert receiving == {f"projection.{PROJECTION_NAME}": plan["events"],
                             f"projection.{STATISTICS}": run_events}
        assert plan["skipped_by_group"] == {RUNS.name: 2}  # the engine never reruns a run
        before, end = await _answers(wf, runs), node.container.store.max_position()
        handled = {g: replayed(g, "handled") for g in receiving}
        code, out, err = await eddy("events", "replay", "--app", app_id, "--republish",
                                    "--json")
        assert code == 0, err

        async def all_handled() -> bool:
            return all(replayed(g, "handled") >= handled[g] + n for g, n in receiving.items())
        await eventually(all_handled)
        assert await _answers(wf, runs) == before
        assert node.container.store.max_position() == end


async def test_a_replayed_real_run_is_projected_again_and_never_run_again(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine (a side-effecting group) acknowledges a replay of a run's events without
    acting: no node runs again, nothing is recorded; the projection handles them."""
    step = Gate(outputs={"result": "computed"})
    step.release.set()
    executors_on(monkeypatch)("code", step)
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        app_id, key = await app_with_key(node, auth, mode="workflow", name="Runner")
        publish(node, app_id, graph(
            [graph_node("start", "start", variables=[]), graph_node("step", "code"),
             graph_node("end", "end", outputs=end_outputs(("result", ["step", "result"])))],
            [edge("start", "step"), edge("step", "end")]))
        answer = await node.client.post("/v1/workflows/run", headers=key, json={
            "inputs": {}, "user": "ann", "response_mode": "blocking"})
        assert answer.status_code == 200, answer.text
        run_id = answer.json()["workflow_run_id"]
        wf = Workflow(node, auth, app_id, key)
        await wf.projected(run_id)
        before, end = await _answers(wf, [run_id]), node.container.store.max_position()
        assert len(step.calls) == 1

        code, out, err = await eddy("events", "replay", "--aggregate", run_id, "--republish",
                                    "--dry-run", "--json")
        assert code == 0, err
        plan = json_lines(out)[0]
        assert plan["by_group"] == {f"projection.{PROJECTION_NAME}": plan["events"],
                                    f"projection.{STATISTICS}": plan["events"]}
        assert plan["skipped_by_group"] == {RUNS.name: 1}  # its start, the engine's work
        skipped = replayed(RUNS.name, "skipped")
        handled = replayed(f"projection.{PROJECTION_NAME}", "handled")
        code, _, err = await eddy("events", "replay", "--aggregate", run_id, "--republish")
        assert code == 0, err

        async def delivered() -> bool:
            return replayed(RUNS.name, "skipped") >= skipped + 1 and replayed(
                f"projection.{PROJECTION_NAME}", "handled") >= handled + plan["events"]
        await eventually(delivered)
        assert len(step.calls) == 1
        assert node.container.store.max_position() == end
        assert await _answers(wf, [run_id]) == before


async def test_long_titles_and_users_are_projected_not_parked(settings: Settings) -> None:
    """Text the engine records as given (a DSL's node title, a Service API user) is never
    too long for the read model: refused there, it would park the run's events for good."""
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        app_id, key = await app_with_key(node, auth, mode="workflow")
        wf = Workflow(node, auth, app_id, key)
        long_id, user = "n" * 400, "u" * 300
        run_id = record_run(node, app_id, user=user, steps=(Step(long_id),))
        await wf.projected(run_id)
        [execution] = (await wf.console(f"/workflow-runs/{run_id}/node-executions")).json()[
            "data"]
        assert (execution["node_id"], execution["title"]) == (long_id, long_id.title())
        logs = (await wf.logs()).json()
        assert logs["data"][0]["created_by_end_user"]["session_id"] == user
