"""Projectors of workflow runs into the console read model: a run's row, one row per node
execution (and one per failed attempt of a retried node), and the app's log entry when the
run ends. A run's events are one aggregate's, so they arrive in order."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.platform.projectors import lock
from projections.registry import projectors
from projections.workflow.runs.tables import (
    workflow_app_logs,
    workflow_node_executions,
    workflow_runs,
)
from projections.workflow.triggers import schedule_fired
from schemas.workflow import events as ev
from schemas.workflow.naming import workflow_app_log_id_for

RUNNING, PAUSED = "running", "paused"


def _creator(p: ev.WorkflowRunStarted) -> tuple[str, UUID | None]:
    """(created_by_role, created_by): an app run's end user, or the console account that
    debugged the draft (its id is the run's `user`)."""
    if p.end_user_id is not None:
        return "end_user", p.end_user_id
    try:
        return "account", UUID(p.user)
    except ValueError:
        return "account", None


# Statements built once: the projectors bind values only (no statement construction and
# cache-key generation per event). The columns written are the parameters named after them;
# the other parameters are named after no column (SQLAlchemy reserves those names).
_RUN_ID = bindparam("run_id", type_=workflow_runs.c.id.type)
_APP_ID = bindparam("of_app", type_=workflow_runs.c.app_id.type)
_STARTED_AT = bindparam("started_at", type_=workflow_runs.c.created_at.type)
_OF_APP = workflow_runs.c.app_id == _APP_ID
# the app's runs started before this one (ties broken by id)
_STARTED_BEFORE = or_(workflow_runs.c.created_at < _STARTED_AT,
                      and_(workflow_runs.c.created_at == _STARTED_AT,
                           workflow_runs.c.id < _RUN_ID))
_MOVE_LATER_UP = update(workflow_runs).where(_OF_APP, not_(_STARTED_BEFORE)).values(
    sequence_number=workflow_runs.c.sequence_number + 1)
_INSERT_RUN = insert(workflow_runs).values(
    id=_RUN_ID, app_id=_APP_ID, created_at=_STARTED_AT,
    sequence_number=select(func.count() + 1).select_from(workflow_runs)
    .where(_OF_APP, _STARTED_BEFORE).scalar_subquery())


async def project_run_started(conn: AsyncConnection, e: Envelope[ev.WorkflowRunStarted]) -> None:
    """The run's row, numbered among its app's runs by when they started (Dify's
    sequence number): runs of one app are other aggregates, applied in any order and
    concurrently, so the app's lock serializes them and a run applied after a later one
    takes its place and moves the later ones up; every rebuild numbers them alike."""
    p = e.payload
    await lock(conn, p.app_id, exclusive=True)
    at = {"run_id": e.aggregate_id, "of_app": p.app_id, "started_at": e.occurred_at}
    await conn.execute(_MOVE_LATER_UP, at)
    role, created_by = _creator(p)
    await conn.execute(_INSERT_RUN, {
        **at, "tenant_id": e.tenant_id, "workflow_id": p.workflow_id, "version": p.version,
        "mode": p.mode, "triggered_from": p.triggered_from, "node_id": p.node_id,
        "status": RUNNING, "inputs": p.inputs, "elapsed_time": 0.0, "total_tokens": 0,
        "total_steps": 0, "exceptions_count": 0, "created_by_role": role,
        "created_by": created_by, "session_id": p.user, "conversation_id": p.conversation_id,
        "message_id": p.message_id})
    if p.triggered_from == "schedule":
        await schedule_fired(conn, e)


def _node_started(dialect: str) -> Any:
    """A node's execution row from its run's row in one statement; the same execution
    started again (a retry or a member taking the run over) is the same row, running again."""
    nodes, runs = workflow_node_executions, workflow_runs
    new = {"id": bindparam("execution_id", type_=nodes.c.id.type),
           "tenant_id": runs.c.tenant_id, "app_id": runs.c.app_id,
           "workflow_id": runs.c.workflow_id, "workflow_run_id": runs.c.id,
           "index": bindparam("index", type_=nodes.c.index.type),
           "predecessor_node_id": bindparam("predecessor_node_id",
                                            type_=nodes.c.predecessor_node_id.type),
           "node_id": bindparam("node_id", type_=nodes.c.node_id.type),
           "node_type": bindparam("node_type", type_=nodes.c.node_type.type),
           "title": bindparam("title", type_=nodes.c.title.type),
           "status": literal(RUNNING), "elapsed_time": literal(0.0),
           "created_at": bindparam("created_at", type_=nodes.c.created_at.type)}
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(nodes).from_select(
        list(new), select(*new.values()).where(
            runs.c.id == bindparam("run_id", type_=runs.c.id.type)))
    return statement.on_conflict_do_update(
        index_elements=[nodes.c.id],
        set_={"status": RUNNING, "error": None, "finished_at": None}).returning(nodes.c.id)


# Built once per dialect: the projector only binds its values (no statement construction
# and cache-key generation per event).
_NODE_STARTED = {dialect: _node_started(dialect) for dialect in ("postgresql", "sqlite")}


async def project_node_started(conn: AsyncConnection,
                               e: Envelope[ev.WorkflowNodeStarted]) -> None:
    p = e.payload
    recorded = (await conn.execute(_NODE_STARTED[conn.dialect.name], {
        "execution_id": p.execution_id, "index": p.index,
        "predecessor_node_id": p.predecessor_node_id, "node_id": p.node_id,
        "node_type": p.node_type, "title": p.title, "created_at": e.occurred_at,
        "run_id": e.aggregate_id})).first()
    if recorded is None:
        raise LookupError(f"workflow run {e.aggregate_id} has no row: its node "
                          f"{p.node_id} cannot be shown")


def _metadata(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Dify's execution_metadata of a node that called a model: tokens, price, currency."""
    if not usage:
        return None
    found = {"total_tokens": usage.get("total_tokens"), "total_price": usage.get("total_price"),
             "currency": usage.get("currency")}
    return {k: v for k, v in found.items() if v is not None}


_EXECUTION_ID = bindparam("execution_id", type_=workflow_node_executions.c.id.type)
_NODE_FINISHED = update(workflow_node_executions).where(
    workflow_node_executions.c.id == _EXECUTION_ID)
_COUNT_EXCEPTION = update(workflow_runs).where(workflow_runs.c.id == _RUN_ID).values(
    exceptions_count=workflow_runs.c.exceptions_count + 1)


async def project_node_succeeded(conn: AsyncConnection,
                                 e: Envelope[ev.WorkflowNodeSucceeded]) -> None:
    """Succeeded, or `exception`: failed and went on by its error strategy (default value,
    fail branch), its error in the outputs Dify gives such a node."""
    p = e.payload
    error = (str(p.outputs.get("error_message", "")) or None) if p.status == "exception" \
        else None
    await conn.execute(_NODE_FINISHED, {
        "execution_id": p.execution_id, "status": p.status, "inputs": p.inputs,
        "process_data": p.process_data, "outputs": p.outputs, "outputs_ref": p.outputs_ref,
        "error": error, "elapsed_time": p.elapsed_time,
        "execution_metadata": _metadata(p.usage), "finished_at": e.occurred_at})
    if p.status == "exception":
        await conn.execute(_COUNT_EXCEPTION, {"run_id": e.aggregate_id})


async def project_node_failed(conn: AsyncConnection, e: Envelope[ev.WorkflowNodeFailed]) -> None:
    p = e.payload
    await conn.execute(_NODE_FINISHED, {
        "execution_id": p.execution_id, "status": "failed", "inputs": p.inputs,
        "error": p.error, "elapsed_time": p.elapsed_time, "finished_at": e.occurred_at})


def retry_execution_id(execution_id: UUID, attempt: int) -> UUID:
    """The row of a retried node's failed attempt, beside the execution's own row."""
    return uuid5(execution_id, f"retry:{attempt}")


async def project_node_retried(conn: AsyncConnection,
                               e: Envelope[ev.WorkflowNodeRetried]) -> None:
    """Dify lists each failed attempt of a retried node (status `retry`) before the attempt
    that settles it; the execution's own row goes on running."""
    p = e.payload
    execution = (await conn.execute(select(workflow_node_executions).where(
        workflow_node_executions.c.id == p.execution_id))).mappings().first()
    if execution is None:
        return  # an attempt of an execution never recorded as started: nothing to show it by
    await conn.execute(insert(workflow_node_executions).values({
        **execution, "id": retry_execution_id(p.execution_id, p.attempt), "status": "retry",
        "error": p.error, "retry_index": p.attempt - 1,  # Dify counts retries from 0
        "finished_at": e.occurred_at}))


async def _set_node_status(conn: AsyncConnection, run_id: UUID, node_id: str, before: str,
                           after: str) -> None:
    await conn.execute(update(workflow_node_executions).where(
        workflow_node_executions.c.workflow_run_id == run_id,
        workflow_node_executions.c.node_id == node_id,
        workflow_node_executions.c.status == before).values(status=after))


async def project_run_paused(conn: AsyncConnection, e: Envelope[ev.WorkflowRunPaused]) -> None:
    await conn.execute(update(workflow_runs).where(workflow_runs.c.id == e.aggregate_id)
                       .values(status=PAUSED))
    await _set_node_status(conn, e.aggregate_id, e.payload.node_id, RUNNING, PAUSED)


async def _resumed(conn: AsyncConnection, run_id: UUID, node_id: str) -> None:
    await conn.execute(update(workflow_runs).where(workflow_runs.c.id == run_id)
                       .values(status=RUNNING))
    await _set_node_status(conn, run_id, node_id, PAUSED, RUNNING)


async def project_human_input_submitted(
        conn: AsyncConnection, e: Envelope[ev.WorkflowHumanInputSubmitted]) -> None:
    await _resumed(conn, e.aggregate_id, e.payload.node_id)


async def project_human_input_timed_out(
        conn: AsyncConnection, e: Envelope[ev.WorkflowHumanInputTimedOut]) -> None:
    await _resumed(conn, e.aggregate_id, e.payload.node_id)


def _ended(status: str) -> Any:
    """The run's row ended `status` (the elapsed time, tokens, steps and finish time as
    parameters), returning what its app's log entry copies."""
    runs = workflow_runs
    # Dify's name for a run some nodes failed in and went on
    shown = case((runs.c.exceptions_count > 0, "partial-succeeded"), else_=status) \
        if status == "succeeded" else status
    return update(runs).where(runs.c.id == _RUN_ID).values(status=shown).returning(
        runs.c.tenant_id, runs.c.app_id, runs.c.workflow_id, runs.c.mode,
        runs.c.triggered_from, runs.c.created_by_role, runs.c.created_by)


_RUN_ENDED = {status: _ended(status) for status in ("succeeded", "failed", "stopped")}
_CLOSE_OPEN_NODES = update(workflow_node_executions).where(
    workflow_node_executions.c.workflow_run_id == _RUN_ID,
    workflow_node_executions.c.status.in_([RUNNING, PAUSED]))
_INSERT_APP_LOG = insert(workflow_app_logs)


async def _end(conn: AsyncConnection, e: Envelope[Any], status: str, *,
               leftover: str, **values: Any) -> None:
    """The run ends: its row, the executions still open (a node in flight when the run was
    stopped or failed) closed as `leftover`, and the app's log entry."""
    run = (await conn.execute(_RUN_ENDED[status], {
        "run_id": e.aggregate_id, "elapsed_time": e.payload.elapsed_time,
        "total_tokens": e.payload.total_tokens, "total_steps": e.payload.total_steps,
        "finished_at": e.occurred_at, **values})).mappings().one()
    await conn.execute(_CLOSE_OPEN_NODES, {
        "run_id": e.aggregate_id, "status": leftover, "error": values.get("error"),
        "finished_at": e.occurred_at})
    if run["mode"] == "workflow" and run["triggered_from"] != "debugging":
        await conn.execute(_INSERT_APP_LOG, {
            "id": workflow_app_log_id_for(e.aggregate_id), "tenant_id": run["tenant_id"],
            "app_id": run["app_id"], "workflow_id": run["workflow_id"],
            "workflow_run_id": e.aggregate_id, "created_from": "service-api",
            "created_by_role": run["created_by_role"], "created_by": run["created_by"],
            "created_at": e.occurred_at})


async def project_run_succeeded(conn: AsyncConnection,
                                e: Envelope[ev.WorkflowRunSucceeded]) -> None:
    await _end(conn, e, "succeeded", leftover="stopped", outputs=e.payload.outputs,
               outputs_ref=e.payload.outputs_ref)


async def project_run_failed(conn: AsyncConnection, e: Envelope[ev.WorkflowRunFailed]) -> None:
    await _end(conn, e, "failed", leftover="failed", error=e.payload.error)


async def project_run_stopped(conn: AsyncConnection, e: Envelope[ev.WorkflowRunStopped]) -> None:
    await _end(conn, e, "stopped", leftover="stopped")


async def project_run_expired(conn: AsyncConnection, e: Envelope[ev.WorkflowRunExpired]) -> None:
    run_id = e.aggregate_id
    for table in (workflow_node_executions, workflow_app_logs):
        await conn.execute(delete(table).where(table.c.workflow_run_id == run_id))
    await conn.execute(delete(workflow_runs).where(workflow_runs.c.id == run_id))


PROJECTORS = projectors(
    project_run_started, project_node_started, project_node_succeeded, project_node_failed,
    project_node_retried, project_run_paused, project_human_input_submitted,
    project_human_input_timed_out, project_run_succeeded, project_run_failed,
    project_run_stopped, project_run_expired,
    # a chatflow conversation's variable set between turns: the conversation's, not the
    # run's history (the runs read model shows what the run did); iteration and loop body
    # facts: the engine's record for takeovers (the container's own row shows the node)
    ignore=[ev.WorkflowConversationVariableUpdated, ev.WorkflowBodyNodeRecorded],
)
