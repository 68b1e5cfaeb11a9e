"""The workflow context's run projectors: runs, node executions (retries, pauses), app logs,
and the read side's queries over them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from projections.registry import NUL_SHOWN_AS
from projections.workflow.runs import queries as rq
from projections.workflow.runs.projectors import retry_execution_id
from projections.workflow.runs.tables import (
    workflow_app_logs,
    workflow_node_executions,
    workflow_runs,
)
from schemas.conversation.naming import end_user_id_for
from schemas.platform import events as pev
from schemas.workflow import events as wev
from schemas.workflow.naming import workflow_app_log_id_for
from tests.unit.projectors.harness import PROJECTION, T0, World, apply, exercises, stored

RUN = "WorkflowRun"


async def start(w: World, app_id: UUID, *, user: str = "alice", debugging: bool = False,
                inputs: dict[str, Any] | None = None, workflow_id: UUID | None = None) -> UUID:
    run_id = uuid4()
    await w.emit(RUN, run_id, wev.WorkflowRunStarted(
        app_id=app_id, workflow_id=workflow_id or uuid4(), task_id=uuid4(), mode="workflow",
        triggered_from="debugging" if debugging else "app-run", user=user,
        end_user_id=None if debugging else end_user_id_for(app_id, user),
        inputs=inputs if inputs is not None else {"city": "Oslo"}, system={},
        version="2025-03-01 09:00:00.000000"))
    return run_id


async def node(w: World, run_id: UUID, node_id: str, index: int, *, node_type: str = "code",
               predecessor: str | None = None) -> UUID:
    execution_id = uuid4()
    await w.emit(RUN, run_id, wev.WorkflowNodeStarted(
        node_id=node_id, node_type=node_type, title=node_id.title(), execution_id=execution_id,
        index=index, predecessor_node_id=predecessor))
    return execution_id


async def succeed(w: World, run_id: UUID, outputs: dict[str, Any], **ended: Any) -> None:
    await w.emit(RUN, run_id, wev.WorkflowRunSucceeded(
        outputs=outputs, elapsed_time=ended.pop("elapsed_time", 1.5), **ended))


async def two_node_run(w: World, app_id: UUID, user: str = "alice",
                       answer: str = "Sunny") -> UUID:
    run_id = await start(w, app_id, user=user)
    first = await node(w, run_id, "start", 1, node_type="start")
    await w.emit(RUN, run_id, wev.WorkflowNodeSucceeded(
        node_id="start", execution_id=first, outputs={"city": "Oslo"}))
    second = await node(w, run_id, "llm", 2, node_type="llm", predecessor="start")
    await w.emit(RUN, run_id, wev.WorkflowNodeSucceeded(
        node_id="llm", execution_id=second, inputs={"prompt": "Weather?"},
        process_data={"model": "gpt"}, outputs={"text": answer}, elapsed_time=0.4,
        usage={"total_tokens": 42, "total_price": "0.001", "currency": "USD"}))
    await succeed(w, run_id, {"answer": answer}, total_tokens=42, total_steps=2)
    return run_id


@exercises(wev.WorkflowRunStarted, wev.WorkflowNodeStarted, wev.WorkflowNodeSucceeded,
           wev.WorkflowRunSucceeded)
async def test_a_run_its_node_executions_and_its_log(world: World) -> None:
    app_id = uuid4()
    run_id = await start(world, app_id)
    row = await world.one(workflow_runs, run_id)
    assert (row["status"], row["inputs"], row["sequence_number"], row["created_by_role"],
            row["session_id"], row["finished_at"]) == (
        "running", {"city": "Oslo"}, 1, "end_user", "alice", None)
    assert row["created_by"] == end_user_id_for(app_id, "alice")
    first = await node(world, run_id, "start", 1, node_type="start")
    assert (await world.one(workflow_node_executions, first))["status"] == "running"
    await world.emit(RUN, run_id, wev.WorkflowNodeSucceeded(
        node_id="start", execution_id=first, outputs={"city": "Oslo"}))
    second = await node(world, run_id, "llm", 2, node_type="llm", predecessor="start")
    await world.emit(RUN, run_id, wev.WorkflowNodeSucceeded(
        node_id="llm", execution_id=second, inputs={"prompt": "Weather?"},
        process_data={"model": "gpt"}, outputs={"text": "Sunny"}, elapsed_time=0.4,
        usage={"total_tokens": 42, "total_price": "0.001", "currency": "USD"}))
    assert await world.rows(workflow_app_logs) == []  # a log entry is written at the end
    ended = await world.emit(RUN, run_id, wev.WorkflowRunSucceeded(
        outputs={"answer": "Sunny"}, elapsed_time=1.5, total_tokens=42, total_steps=2))

    found = await rq.run(world.engine, app_id, run_id)
    assert found is not None
    assert (found["status"], found["outputs"], found["elapsed_time"], found["total_tokens"],
            found["total_steps"], found["finished_at"], found["version"]) == (
        "succeeded", {"answer": "Sunny"}, 1.5, 42, 2, stored(ended),
        "2025-03-01 09:00:00.000000")
    assert await rq.run(world.engine, uuid4(), run_id) is None  # another app's: not found

    llm, start_node = await rq.node_executions(world.engine, run_id)  # latest first
    assert (llm["node_type"], llm["title"], llm["index"], llm["predecessor_node_id"],
            llm["status"], llm["inputs"], llm["process_data"], llm["outputs"],
            llm["elapsed_time"], llm["execution_metadata"]) == (
        "llm", "Llm", 2, "start", "succeeded", {"prompt": "Weather?"}, {"model": "gpt"},
        {"text": "Sunny"}, 0.4, {"total_tokens": 42, "total_price": "0.001", "currency": "USD"})
    assert (start_node["id"], start_node["status"]) == (first, "succeeded")

    [log] = await world.rows(workflow_app_logs)
    assert (log["id"], log["workflow_run_id"], log["created_from"], log["created_by_role"],
            log["created_at"]) == (workflow_app_log_id_for(run_id), run_id, "service-api",
                                   "end_user", stored(ended))
    # the app's runs are numbered in the order they started
    later = await two_node_run(world, app_id)
    assert (await world.one(workflow_runs, later))["sequence_number"] == 2
    other_app_run = await two_node_run(world, uuid4())
    assert (await world.one(workflow_runs, other_app_run))["sequence_number"] == 1


@exercises(wev.WorkflowRunStarted)
async def test_runs_numbered_by_start_whatever_order_they_are_applied_in(world: World) -> None:
    """Runs are other aggregates, on other partitions: a live version may apply a later run
    first; a rebuild applies them in store order. Both number them alike."""
    app_id = uuid4()
    started = [await world.envelope(RUN, uuid4(), wev.WorkflowRunStarted(
        app_id=app_id, workflow_id=uuid4(), task_id=uuid4(), mode="workflow",
        triggered_from="app-run", user="u", end_user_id=None, inputs={}, system={}))
        for _ in range(4)]
    for event in (started[2], started[0], started[3], started[1]):
        await apply(world, event)
    numbers = [(await world.one(workflow_runs, e.aggregate_id))["sequence_number"]
               for e in started]
    assert numbers == [1, 2, 3, 4]


@exercises(wev.WorkflowNodeRetried, wev.WorkflowNodeFailed, wev.WorkflowRunFailed)
async def test_retries_exceptions_and_failures(world: World) -> None:
    app_id = uuid4()
    run_id = await start(world, app_id)
    fetch = await node(world, run_id, "fetch", 1, node_type="http-request")
    await world.emit(RUN, run_id, wev.WorkflowNodeRetried(
        node_id="fetch", execution_id=fetch, attempt=1, error="503 from upstream"))
    await world.emit(RUN, run_id, wev.WorkflowNodeStarted(  # the same execution, again
        node_id="fetch", node_type="http-request", title="Fetch", execution_id=fetch,
        index=1, attempt=1))
    await world.emit(RUN, run_id, wev.WorkflowNodeSucceeded(
        node_id="fetch", execution_id=fetch, status="exception",
        outputs={"error_message": "still 503", "error_type": "HTTPError"}))
    await succeed(world, run_id, {"body": ""})
    execution, attempt = await rq.node_executions(world.engine, run_id)
    assert (execution["id"], execution["status"], execution["error"],
            execution["retry_index"]) == (fetch, "exception", "still 503", None)
    assert (attempt["id"], attempt["status"], attempt["error"], attempt["retry_index"],
            attempt["node_id"], attempt["index"]) == (
        retry_execution_id(fetch, 1), "retry", "503 from upstream", 0, "fetch", 1)
    run = await world.one(workflow_runs, run_id)
    # a run in which a node failed and went on by its error strategy: Dify's partial success
    assert (run["status"], run["exceptions_count"]) == ("partial-succeeded", 1)

    failing = await start(world, app_id)
    code = await node(world, failing, "code", 1)
    await world.emit(RUN, failing, wev.WorkflowNodeFailed(
        node_id="code", execution_id=code, error="division by zero", inputs={"x": 0},
        elapsed_time=0.2))
    in_flight = await node(world, failing, "other_branch", 2)
    await world.emit(RUN, failing, wev.WorkflowRunFailed(
        error="Node Code run failed: division by zero", elapsed_time=0.3, total_steps=2))
    run = await world.one(workflow_runs, failing)
    assert (run["status"], run["error"], run["total_steps"]) == (
        "failed", "Node Code run failed: division by zero", 2)
    failed = await world.one(workflow_node_executions, code)
    assert (failed["status"], failed["error"], failed["inputs"]) == (
        "failed", "division by zero", {"x": 0})
    # nothing stays running once its run ended
    assert (await world.one(workflow_node_executions, in_flight))["status"] == "failed"
    assert len(await world.rows(workflow_app_logs)) == 2


@exercises(wev.WorkflowRunPaused, wev.WorkflowHumanInputSubmitted,
           wev.WorkflowHumanInputTimedOut, wev.WorkflowRunStopped)
async def test_pauses_resumes_and_a_stop(world: World) -> None:
    app_id = uuid4()
    run_id = await start(world, app_id, user=str(world.actor), debugging=True)
    review = await node(world, run_id, "review", 1, node_type="human-input")
    await world.emit(RUN, run_id, wev.WorkflowRunPaused(
        node_id="review", form_token="tok", form={"fields": []}, expires_at=0.0))
    assert (await world.one(workflow_runs, run_id))["status"] == "paused"
    assert (await world.one(workflow_node_executions, review))["status"] == "paused"
    await world.emit(RUN, run_id, wev.WorkflowHumanInputSubmitted(
        node_id="review", form_token="tok", action="approve", inputs={}, submitted_by="bob"))
    assert (await world.one(workflow_runs, run_id))["status"] == "running"
    assert (await world.one(workflow_node_executions, review))["status"] == "running"
    await world.emit(RUN, run_id, wev.WorkflowNodeSucceeded(node_id="review",
                                                            execution_id=review))
    second = await node(world, run_id, "second_review", 2, node_type="human-input")
    await world.emit(RUN, run_id, wev.WorkflowRunPaused(
        node_id="second_review", form_token="tok2", form={}, expires_at=0.0))
    await world.emit(RUN, run_id, wev.WorkflowHumanInputTimedOut(
        node_id="second_review", form_token="tok2"))
    assert (await world.one(workflow_runs, run_id))["status"] == "running"
    await world.emit(RUN, run_id, wev.WorkflowRunStopped(elapsed_time=9.0, total_steps=2))

    run = await world.one(workflow_runs, run_id)
    assert (run["status"], run["elapsed_time"], run["created_by_role"], run["created_by"]) == (
        "stopped", 9.0, "account", world.actor)
    assert (await world.one(workflow_node_executions, review))["status"] == "succeeded"
    assert (await world.one(workflow_node_executions, second))["status"] == "stopped"
    assert await world.rows(workflow_app_logs) == []  # debug runs are not an app's logs


@exercises(wev.WorkflowRunStarted, wev.WorkflowRunSucceeded)
async def test_runs_listed_newest_first_by_trigger_and_status(world: World) -> None:
    app_id = uuid4()
    debug_runs = [await start(world, app_id, user=str(world.actor), debugging=True)
                  for _ in range(3)]
    await succeed(world, debug_runs[0], {})
    app_run = await two_node_run(world, app_id)
    page = await rq.list_runs(world.engine, app_id, triggered_from="debugging", status=None,
                              last_id=None, limit=2)
    assert page is not None
    assert ([r["id"] for r in page.items], page.total) == (debug_runs[:0:-1], 1)
    rest = await rq.list_runs(world.engine, app_id, triggered_from="debugging", status=None,
                              last_id=page.items[-1]["id"], limit=2)
    assert rest is not None and ([r["id"] for r in rest.items], rest.total) == (
        [debug_runs[0]], 0)
    succeeded = await rq.list_runs(world.engine, app_id, triggered_from="debugging",
                                   status="succeeded", last_id=None, limit=20)
    assert succeeded is not None and [r["id"] for r in succeeded.items] == [debug_runs[0]]
    app_runs = await rq.list_runs(world.engine, app_id, triggered_from="app-run", status=None,
                                  last_id=None, limit=20)
    assert app_runs is not None and [r["id"] for r in app_runs.items] == [app_run]
    assert await rq.list_runs(world.engine, app_id, triggered_from="debugging", status=None,
                              last_id=uuid4(), limit=2) is None
    single = uuid4()  # a single-node debug run: Dify's single step, no run of the history
    await world.emit(RUN, single, wev.WorkflowRunStarted(
        app_id=app_id, workflow_id=uuid4(), task_id=uuid4(), mode="workflow",
        triggered_from="debugging", user=str(world.actor), end_user_id=None, inputs={},
        system={}, node_id="llm"))
    listed = await rq.list_runs(world.engine, app_id, triggered_from="debugging", status=None,
                                last_id=None, limit=20)
    assert listed is not None and single not in {r["id"] for r in listed.items}
    assert await rq.count_runs(world.engine, app_id, triggered_from="debugging", status=None,
                               since=None) == {"succeeded": 1, "running": 2}
    assert await rq.run(world.engine, app_id, single) is not None
    assert await rq.list_runs(world.engine, app_id, triggered_from="debugging", status=None,
                              last_id=app_run, limit=2) is not None


@exercises(wev.WorkflowRunStarted, wev.WorkflowRunSucceeded, wev.WorkflowRunFailed,
           pev.AccountRegistered)
async def test_logs_filtered_and_paged(world: World) -> None:
    app_id = uuid4()
    alice = await two_node_run(world, app_id, "alice", answer="Sunny in Oslo")
    bob = await two_node_run(world, app_id, "bob", answer="Rain")
    failing = await start(world, app_id, user="carol", inputs={"city": "Bergen"})
    await world.emit(RUN, failing, wev.WorkflowRunFailed(error="boom", elapsed_time=0.1))
    await two_node_run(world, uuid4(), "alice")  # another app's

    async def ids(f: rq.LogFilter, page: int = 1, limit: int = 20) -> tuple[list[UUID], int]:
        found = await rq.app_logs(world.engine, app_id, f, page=page, limit=limit)
        return [r["workflow_run_id"] for r in found.items], found.total

    assert await ids(rq.LogFilter()) == ([failing, bob, alice], 3)
    assert await ids(rq.LogFilter(), page=2, limit=2) == ([alice], 3)
    assert await ids(rq.LogFilter(status="failed")) == ([failing], 1)
    assert await ids(rq.LogFilter(keyword="sunny")) == ([alice], 1)  # outputs, any case
    assert await ids(rq.LogFilter(keyword="bergen")) == ([failing], 1)  # inputs
    assert await ids(rq.LogFilter(keyword="BO")) == ([bob], 1)  # the end user's session
    assert await ids(rq.LogFilter(session_id="carol")) == ([failing], 1)
    assert await ids(rq.LogFilter(session_id="car")) == ([], 0)
    at_bob = (await world.one(workflow_app_logs, workflow_app_log_id_for(bob)))["created_at"]
    at_bob = at_bob.replace(tzinfo=T0.tzinfo)
    assert await ids(rq.LogFilter(created_before=at_bob)) == ([bob, alice], 2)
    assert await ids(rq.LogFilter(created_after=at_bob + timedelta(microseconds=1))) == (
        [failing], 1)

    # a debugging account's run is no log entry; the account filter matches none then
    await world.emit("Account", world.actor, pev.AccountRegistered(
        email="olga@example.com", name="Olga", credentials_id=uuid4()))
    debug = await start(world, app_id, user=str(world.actor), debugging=True)
    await succeed(world, debug, {})
    assert await ids(rq.LogFilter(account_id=world.actor)) == ([], 0)
    found = await rq.run(world.engine, app_id, debug)
    assert found is not None
    assert (found["account_name"], found["account_email"]) == ("Olga", "olga@example.com")


@exercises(wev.WorkflowRunStarted, wev.WorkflowNodeStarted, wev.WorkflowNodeSucceeded)
async def test_a_stored_nul_shows_as_a_replacement_character(world: World) -> None:
    """Events recorded before the edge refused NUL: the read model shows where it was."""
    app_id, run_id, execution_id = uuid4(), uuid4(), uuid4()
    events = [wev.WorkflowRunStarted(
        app_id=app_id, workflow_id=uuid4(), task_id=uuid4(), mode="workflow",
        triggered_from="app-run", user="a\x00b", end_user_id=end_user_id_for(app_id, "a"),
        inputs={"q\x00": "x\x00y"}, system={}), wev.WorkflowNodeStarted(
        node_id="code", node_type="code", title="Co\x00de", execution_id=execution_id, index=1),
        wev.WorkflowNodeSucceeded(node_id="code", execution_id=execution_id,
                                  outputs={"out": ["\x00"]})]
    for payload in events:
        event = await world.envelope(RUN, run_id, payload)
        async with world.engine.begin() as conn:
            await PROJECTION.apply(conn, [event])
        world.applied.add(type(payload))
    run = await world.one(workflow_runs, run_id)
    assert (run["session_id"], run["inputs"]) == (
        f"a{NUL_SHOWN_AS}b", {f"q{NUL_SHOWN_AS}": f"x{NUL_SHOWN_AS}y"})
    execution = await world.one(workflow_node_executions, execution_id)
    assert (execution["title"], execution["outputs"]) == (
        f"Co{NUL_SHOWN_AS}de", {"out": [NUL_SHOWN_AS]})


@exercises(wev.WorkflowRunStarted, wev.WorkflowNodeStarted, wev.WorkflowRunSucceeded)
async def test_a_run_recorded_without_a_workspace_is_shown_not_refused(world: World) -> None:
    """A writer may record a run's events with no tenant: refused, the run's later events
    would wait behind it for good; reads go by app."""
    app_id, run_id, execution_id = uuid4(), uuid4(), uuid4()
    for payload in (wev.WorkflowRunStarted(
            app_id=app_id, workflow_id=uuid4(), task_id=uuid4(), mode="workflow",
            triggered_from="app-run", user="ann", end_user_id=end_user_id_for(app_id, "ann"),
            inputs={}, system={}),
            wev.WorkflowNodeStarted(node_id="start", node_type="start", title="Start",
                                    execution_id=execution_id, index=1),
            wev.WorkflowRunSucceeded(outputs={}, elapsed_time=0.1)):
        await apply(world, replace(await world.envelope(RUN, run_id, payload), tenant_id=None))
    found = await rq.run(world.engine, app_id, run_id)
    assert found is not None and (found["status"], found["tenant_id"]) == ("succeeded", None)
    assert [e["id"] for e in await rq.node_executions(world.engine, run_id)] == [execution_id]
    page = await rq.app_logs(world.engine, app_id, rq.LogFilter(), page=1, limit=20)
    assert [r["workflow_run_id"] for r in page.items] == [run_id]


@exercises(wev.WorkflowRunExpired)
async def test_an_expired_run_leaves_runs_node_executions_and_logs(world: World) -> None:
    app_id = uuid4()
    old, new = await two_node_run(world, app_id), await two_node_run(world, app_id)
    await world.emit(RUN, old, wev.WorkflowRunExpired())
    assert await rq.run(world.engine, app_id, old) is None
    assert await rq.node_executions(world.engine, old) == []
    assert [r["workflow_run_id"] for r in await world.rows(workflow_app_logs)] == [new]
    assert await rq.run(world.engine, app_id, new) is not None
    assert len(await rq.node_executions(world.engine, new)) == 2
