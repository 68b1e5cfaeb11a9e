"""Workflow runs as the read model shows them: a run's detail and an app's run logs
(Service API), and the console's run history, run detail, node executions and logs, in
Dify's shapes. A key or a workspace sees only its own app's runs."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from adapters.storage.base import FileNotFoundInStorage
from gateway.auth import ApiKeyPrincipal, AppKey, AppReader, ConsoleUser
from gateway.deps import get_container, parse_id
from gateway.params import Page
from gateway.platform.console import console_app
from gateway.views import timestamp
from gateway.workflow.runs import workflow_app_of_key
from projections.platform import queries as platform
from projections.workflow import queries as workflow_queries
from projections.workflow.runs import queries
from schemas.errors import (
    AppNotFound,
    BadRequest,
    NotFound,
    WorkflowRunNotFound,
)

log = logging.getLogger(__name__)
service_router = APIRouter(prefix="/v1")
console_router = APIRouter(prefix="/console/api")

WORKFLOW_MODES = ("workflow", "advanced-chat")
Limit = Annotated[int, Query(ge=1, le=100)]
TextFilter = Annotated[str | None, Query(max_length=255)]
# what a logs page filters on: the Service API's enum; the console adds partial success
SERVICE_LOG_STATUS = "^(succeeded|failed|stopped)$"
CONSOLE_LOG_STATUS = "^(succeeded|failed|stopped|partial-succeeded)$"
RUN_STATUS = "^(running|succeeded|failed|stopped|partial-succeeded|paused)$"
TRIGGERS = "^(debugging|app-run|webhook|schedule)$"


# --- views ------------------------------------------------------------------------------------


async def outputs_of(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    """What a run or node execution returned: in its row, or in storage (`outputs_ref`) when
    it was too large for an event."""
    ref = row["outputs_ref"]
    if not ref:
        return row["outputs"] or {}
    try:
        return json.loads(await get_container(request).storage.load(ref))  # type: ignore[no-any-return]
    except FileNotFoundInStorage:
        log.warning("workflow outputs missing from storage", extra={"key": ref})
        return {}


def account_view(row: dict[str, Any]) -> dict[str, Any] | None:
    if row["account_email"] is None:
        return None
    return {"id": str(row["created_by"]), "name": row["account_name"],
            "email": row["account_email"]}


def end_user_view(row: dict[str, Any], prefix: str = "") -> dict[str, Any] | None:
    if row[f"{prefix}created_by_role"] != "end_user":
        return None
    return {"id": str(row[f"{prefix}created_by"]), "type": "service-api", "is_anonymous": False,
            "session_id": row[f"{prefix}session_id"]}


def run_summary(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The fields every run listing shows (`prefix`: where the run's columns are named so)."""
    def get(name: str) -> Any:
        return row[prefix + name]
    return {"id": str(get("id")), "version": get("version"), "status": get("status"),
            "error": get("error"), "elapsed_time": get("elapsed_time"),
            "total_tokens": get("total_tokens"), "total_steps": get("total_steps"),
            "created_at": timestamp(get("created_at")),
            "finished_at": timestamp(get("finished_at")),
            "exceptions_count": get("exceptions_count")}


def log_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]),
            "workflow_run": {**run_summary(row, "run_"),
                             "triggered_from": row["run_triggered_from"]},
            "created_from": row["created_from"], "created_by_role": row["created_by_role"],
            "created_by_account": account_view(row),
            "created_by_end_user": end_user_view(row, "run_"),
            "created_at": timestamp(row["created_at"]), "details": None}


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}: not an ISO 8601 timestamp.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _logs_page(request: Request, app_id: UUID, *, keyword: str | None,
                     status: str | None, before: str | None, after: str | None,
                     session_id: str | None, account_email: str | None, page: int,
                     limit: int) -> dict[str, Any]:
    engine = get_container(request).engine
    account_id = None
    if account_email:
        account = await platform.account_by_email(engine, account_email)
        if account is None:
            raise BadRequest(f"Account not found: {account_email}")
        account_id = account["id"]
    found = await queries.app_logs(engine, app_id, queries.LogFilter(
        keyword=keyword, status=status, created_before=_instant(before, "created_at__before"),
        created_after=_instant(after, "created_at__after"), session_id=session_id,
        account_id=account_id), page=page, limit=limit)
    return {"page": page, "limit": limit, "total": found.total,
            "has_more": page * limit < found.total,
            "data": [log_view(r) for r in found.items]}


# --- Service API ----------------------------------------------------------------------------


@service_router.get("/workflows/run/{workflow_run_id}")
async def run_detail(request: Request, workflow_run_id: str,
                     key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await workflow_app_of_key(request, key, WORKFLOW_MODES)
    row = await queries.run(get_container(request).engine, app["id"],
                            parse_id(workflow_run_id, WorkflowRunNotFound))
    if row is None:
        raise WorkflowRunNotFound()
    return {"id": str(row["id"]), "workflow_id": str(row["workflow_id"]),
            "status": row["status"], "inputs": json.dumps(row["inputs"], ensure_ascii=False),
            "outputs": await outputs_of(request, row), "error": row["error"],
            "total_steps": row["total_steps"], "total_tokens": row["total_tokens"],
            "created_at": timestamp(row["created_at"]),
            "finished_at": timestamp(row["finished_at"]), "elapsed_time": row["elapsed_time"]}


@service_router.get("/workflows/logs")
async def service_logs(
        request: Request, key: ApiKeyPrincipal = AppKey, keyword: TextFilter = None,
        status: Annotated[str | None, Query(pattern=SERVICE_LOG_STATUS)] = None,
        created_at__before: str | None = None, created_at__after: str | None = None,
        created_by_end_user_session_id: TextFilter = None, created_by_account: TextFilter = None,
        page: Page = 1, limit: Limit = 20) -> dict[str, Any]:
    app = await workflow_app_of_key(request, key, WORKFLOW_MODES)
    return await _logs_page(
        request, app["id"], keyword=keyword, status=status, before=created_at__before,
        after=created_at__after, session_id=created_by_end_user_session_id,
        account_email=created_by_account, page=page, limit=limit)


# --- console --------------------------------------------------------------------------------


async def _console_app(request: Request, user: ConsoleUser, app_id: str,
                       modes: tuple[str, ...] = WORKFLOW_MODES) -> dict[str, Any]:
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    if app["mode"] not in modes:
        raise AppNotFound(f"App mode is not in the supported list: {sorted(modes)}")
    return app


async def _console_run(request: Request, user: ConsoleUser, app_id: str,
                       run_id: str) -> dict[str, Any]:
    app = await _console_app(request, user, app_id)
    row = await queries.run(get_container(request).engine, app["id"],
                            parse_id(run_id, WorkflowRunNotFound))
    if row is None:
        raise WorkflowRunNotFound()
    return row


async def _runs_page(request: Request, app: dict[str, Any], *, last_id: str | None,
                     limit: int, status: str | None, triggered_from: str,
                     of_chats: bool) -> dict[str, Any]:
    page = await queries.list_runs(
        get_container(request).engine, app["id"], triggered_from=triggered_from,
        status=status, last_id=parse_id(last_id, WorkflowRunNotFound) if last_id else None,
        limit=limit)
    if page is None:
        raise NotFound("Last workflow run not exists.")
    return {"limit": limit, "has_more": page.total > 0, "data": [
        {**run_summary(r), "handoff_duration": 0.0, "created_by_account": account_view(r),
         "retry_index": None,
         **({"conversation_id": _text(r["conversation_id"]),
             "message_id": _text(r["message_id"])} if of_chats else {})}
        for r in page.items]}


def _text(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


RunStatus = Annotated[str | None, Query(pattern=RUN_STATUS)]
Trigger = Annotated[str, Query(pattern=TRIGGERS)]


@console_router.get("/apps/{app_id}/workflow-runs")
async def console_runs(request: Request, app_id: str, user: ConsoleUser = AppReader,
                       last_id: str | None = None, limit: Limit = 20, status: RunStatus = None,
                       triggered_from: Trigger = "debugging") -> dict[str, Any]:
    """Newest first, paged by `last_id`; the draft's debug runs unless `triggered_from`
    says app-run (Dify's default)."""
    app = await _console_app(request, user, app_id)
    return await _runs_page(request, app, last_id=last_id, limit=limit, status=status,
                            triggered_from=triggered_from, of_chats=False)


@console_router.get("/apps/{app_id}/advanced-chat/workflow-runs")
async def console_chat_runs(request: Request, app_id: str, user: ConsoleUser = AppReader,
                            last_id: str | None = None, limit: Limit = 20,
                            status: RunStatus = None,
                            triggered_from: Trigger = "debugging") -> dict[str, Any]:
    """An advanced-chat app's runs, each with its conversation and message."""
    app = await _console_app(request, user, app_id, ("advanced-chat",))
    return await _runs_page(request, app, last_id=last_id, limit=limit, status=status,
                            triggered_from=triggered_from, of_chats=True)


DURATION = re.compile(r"^(\d+)([dhms])$")
SECONDS_IN = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@console_router.get("/apps/{app_id}/workflow-runs/count")
async def console_run_counts(request: Request, app_id: str, user: ConsoleUser = AppReader,
                             status: RunStatus = None,
                             time_range: Annotated[str | None, Query(pattern=DURATION.pattern)]
                             = None, triggered_from: Trigger = "debugging") -> dict[str, int]:
    """The app's runs per status, those started within `time_range` (7d, 4h, 30m, 30s)."""
    app = await _console_app(request, user, app_id)
    since = None
    if time_range is not None:
        amount, unit = DURATION.fullmatch(time_range).groups()  # type: ignore[union-attr]
        since = datetime.now(UTC) - timedelta(seconds=int(amount) * SECONDS_IN[unit])
    counts = await queries.count_runs(get_container(request).engine, app["id"],
                                      triggered_from=triggered_from, status=status, since=since)
    return {"total": sum(counts.values()), "running": counts.get("running", 0),
            "succeeded": counts.get("succeeded", 0), "failed": counts.get("failed", 0),
            "stopped": counts.get("stopped", 0),
            "partial_succeeded": counts.get("partial-succeeded", 0)}


@console_router.get("/apps/{app_id}/workflow-runs/{run_id}")
async def console_run(request: Request, app_id: str, run_id: str,
                      user: ConsoleUser = AppReader) -> dict[str, Any]:
    row = await _console_run(request, user, app_id, run_id)
    # the graph the run executed: its version's (published, or the draft's debug snapshot)
    version = await workflow_queries.workflow_version(get_container(request).engine,
                                                      row["app_id"], row["workflow_id"])
    return {**run_summary(row), "graph": version["graph"] if version else None,
            "inputs": row["inputs"],
            "outputs": await outputs_of(request, row), "handoff_duration": 0.0,
            "created_by_role": row["created_by_role"], "created_by_account": account_view(row),
            "created_by_end_user": end_user_view(row)}


@console_router.get("/apps/{app_id}/workflow-runs/{run_id}/node-executions")
async def console_node_executions(request: Request, app_id: str, run_id: str,
                                  user: ConsoleUser = AppReader) -> dict[str, Any]:
    run = await _console_run(request, user, app_id, run_id)
    rows = await queries.node_executions(get_container(request).engine, run["id"])
    return {"data": [await _node_execution_view(request, run, r) for r in rows]}


async def _node_execution_view(request: Request, run: dict[str, Any],
                               row: dict[str, Any]) -> dict[str, Any]:
    view = {
        "id": str(row["id"]), "index": row["index"],
        "predecessor_node_id": row["predecessor_node_id"], "node_id": row["node_id"],
        "node_type": row["node_type"], "title": row["title"], "inputs": row["inputs"],
        "process_data": row["process_data"], "outputs": await outputs_of(request, row),
        "status": row["status"], "error": row["error"], "elapsed_time": row["elapsed_time"],
        "execution_metadata": row["execution_metadata"], "extras": {},
        "created_at": timestamp(row["created_at"]),
        "created_by_role": run["created_by_role"], "created_by_account": account_view(run),
        "created_by_end_user": end_user_view(run),
        "finished_at": timestamp(row["finished_at"]), "inputs_truncated": False,
        "outputs_truncated": False, "process_data_truncated": False}
    if row["retry_index"] is not None:
        view["retry_index"] = row["retry_index"]
    return view


@console_router.get("/apps/{app_id}/workflow-app-logs")
async def console_logs(
        request: Request, app_id: str, user: ConsoleUser = AppReader, keyword: TextFilter = None,
        status: Annotated[str | None, Query(pattern=CONSOLE_LOG_STATUS)] = None,
        created_at__before: str | None = None, created_at__after: str | None = None,
        created_by_end_user_session_id: TextFilter = None, created_by_account: TextFilter = None,
        page: Page = 1, limit: Limit = 20) -> dict[str, Any]:
    app = await _console_app(request, user, app_id, ("workflow",))
    return await _logs_page(
        request, app["id"], keyword=keyword, status=status, before=created_at__before,
        after=created_at__after, session_id=created_by_end_user_session_id,
        account_email=created_by_account, page=page, limit=limit)
