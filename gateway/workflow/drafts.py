"""Console API of a workflow or advanced-chat app's draft and versions (Dify's paths and
shapes): GET/POST /workflows/draft, POST/GET /workflows/publish, GET /workflows, and the
editor's debug runs: the draft frozen as a snapshot, then a run on it streamed as the Service
API streams runs (/workflows/draft/run), or one node of it answered when it finished
(/workflows/draft/nodes/{node_id}/run); /workflow-runs/tasks/{task_id}/stop stops one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from gateway.auth import ConsoleUser, Editor
from gateway.commanding import CommandPending
from gateway.deps import command_gateway, get_container, maybe_uuid, parse_id
from gateway.params import Page
from gateway.platform.console import console_app
from gateway.task_events import StreamInterrupted, entries
from gateway.views import timestamp
from gateway.workflow.files import run_arguments
from gateway.workflow.runs import RUN_CLOSING, stop_task, streamed_run
from projections.keyring import workspace_keyring
from projections.platform import queries as platform_queries
from projections.workflow import queries
from schemas.conversation.naming import task_owner_key, task_stream_key
from schemas.errors import AppNotFound, EddyError
from schemas.workflow import api
from schemas.workflow import commands as cmd
from schemas.workflow.naming import (
    HIDDEN_VALUE,
    SECRET_VALUE_TYPE,
    WORKFLOW_APP_MODES,
    draft_hash,
    environment_secret_purpose,
    published_workflow_id_for,
    run_owner,
    workflow_draft_id_for,
)
from workflow_graph.defaults import DEFAULT_FEATURES, default_graph
from workflow_graph.graph import parse_graph, validate

router = APIRouter(prefix="/console/api")


async def workflow_app(request: Request, user: ConsoleUser, app_id: str,
                       modes: tuple[str, ...] = WORKFLOW_APP_MODES) -> dict[str, Any]:
    """The workspace's app named in the path, if it is of one of `modes` (by default, a
    workflow or advanced-chat app)."""
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    if app["mode"] not in modes:
        raise AppNotFound(f"App mode is not in the supported list: {', '.join(modes)}")
    return app


def checked_graph(graph: dict[str, Any], mode: str) -> list[str]:
    """Validate a graph as a draft of a `mode` app (workflow_graph's typed errors become
    400s in gateway/errors.py); the warnings (nodes needing a plugin)."""
    return [w.message for w in validate(parse_graph(graph, "graph"), mode)]


async def sealed_environment(request: Request, tenant_id: UUID,
                             variables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Secret values sealed with the workspace's key before they travel in a command
    (HIDDEN_VALUE, "keep the saved one", stays as it is for the draft to resolve)."""
    c = get_container(request)
    keyring = await workspace_keyring(c.engine, c.settings.SECRET_KEY, tenant_id)
    purpose = environment_secret_purpose(tenant_id)
    return [{**v, "value": keyring.seal(purpose, str(v.get("value") or ""))}
            if v.get("value_type") == SECRET_VALUE_TYPE and v.get("value") != HIDDEN_VALUE
            else v for v in variables]


def _masked(variables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Secrets are never shown: the editor sends HIDDEN_VALUE back to keep one unchanged."""
    return [{**v, "value": HIDDEN_VALUE} if v.get("value_type") == SECRET_VALUE_TYPE else v
            for v in variables]


async def _workflow_views(request: Request, rows: list[dict[str, Any]], *,
                         draft: bool) -> list[dict[str, Any]]:
    """Dify's workflow fields, of the draft (a `workflow_drafts` row) or versions, with
    their authors' simple account fields."""
    authors = await platform_queries.account_summaries(
        get_container(request).engine,
        {r[k] for r in rows for k in ("created_by", "updated_by") if r.get(k)})
    return [_workflow_view(row, authors, draft=draft) for row in rows]


def _workflow_view(row: dict[str, Any], authors: dict[UUID, dict[str, Any]], *,
                   draft: bool) -> dict[str, Any]:
    updated_at = row["updated_at"] if draft else row["created_at"]
    updated_by = row["updated_by"] if draft else row["created_by"]
    return {
        "id": str(row["id"]),
        "graph": row["graph"],
        "features": row["features"],
        "hash": row["hash"] if draft else draft_hash(row["graph"], row["features"]),
        "version": "draft" if draft else row["version"],
        "marked_name": "" if draft else row["marked_name"],
        "marked_comment": "" if draft else row["marked_comment"],
        "created_by": authors.get(row["created_by"]),
        "created_at": timestamp(row["created_at"]),
        "updated_by": authors.get(updated_by),
        "updated_at": timestamp(updated_at),
        "tool_published": False,
        "environment_variables": _masked(row["environment_variables"]),
        "conversation_variables": row["conversation_variables"],
    }


def _default_draft(app: dict[str, Any]) -> dict[str, Any]:
    graph, features = default_graph(app["mode"]), dict(DEFAULT_FEATURES)
    return {
        "id": workflow_draft_id_for(app["id"]), "graph": graph, "features": features,
        "hash": draft_hash(graph, features), "environment_variables": [],
        "conversation_variables": [], "created_by": None, "created_at": app["created_at"],
        "updated_by": None, "updated_at": app["created_at"]}


@router.get("/apps/{app_id}/workflows/draft")
async def get_draft(request: Request, app_id: str,
                    user: ConsoleUser = Editor) -> dict[str, Any]:
    app = await workflow_app(request, user, app_id)
    row = await queries.workflow_draft(get_container(request).engine, app["id"])
    return (await _workflow_views(request, [row or _default_draft(app)], draft=True))[0]


@router.post("/apps/{app_id}/workflows/draft")
async def sync_draft(request: Request, app_id: str, body: api.SyncDraftRequest,
                     user: ConsoleUser = Editor) -> dict[str, Any]:
    app = await workflow_app(request, user, app_id)
    checked_graph(body.graph, app["mode"])
    variables = [v.model_dump(mode="json") for v in body.environment_variables]
    await command_gateway(request).send(
        cmd.SyncWorkflowDraft(
            app_id=app["id"], graph=body.graph, features=body.features,
            environment_variables=await sealed_environment(request, user.tenant_id, variables),
            conversation_variables=[v.model_dump(mode="json")
                                    for v in body.conversation_variables],
            hash=body.hash),
        aggregate_id=workflow_draft_id_for(app["id"]), tenant_id=user.tenant_id,
        actor_id=user.account_id)
    row = await queries.workflow_draft(get_container(request).engine, app["id"])
    assert row is not None, "read your writes: the draft is projected"
    return {"result": "success", "hash": row["hash"], "updated_at": timestamp(row["updated_at"])}


@router.post("/apps/{app_id}/workflows/publish")
async def publish(request: Request, app_id: str, body: api.PublishRequest | None = None,
                  user: ConsoleUser = Editor) -> dict[str, Any]:
    app = await workflow_app(request, user, app_id)
    body = body or api.PublishRequest()
    workflow_id = uuid4()
    await command_gateway(request).send(
        # Dify's version string of a published workflow: when it was published.
        cmd.PublishWorkflow(app_id=app["id"], workflow_id=workflow_id,
                            version=str(datetime.now(UTC).replace(tzinfo=None)),
                            marked_name=body.marked_name, marked_comment=body.marked_comment),
        aggregate_id=published_workflow_id_for(app["id"]), tenant_id=user.tenant_id,
        actor_id=user.account_id)
    row = await queries.workflow_version(get_container(request).engine, app["id"], workflow_id)
    assert row is not None, "read your writes: the version is projected"
    return {"result": "success", "created_at": timestamp(row["created_at"])}


@router.get("/apps/{app_id}/workflows/publish")
async def get_published(request: Request, app_id: str,
                        user: ConsoleUser = Editor) -> dict[str, Any] | None:
    app = await workflow_app(request, user, app_id)
    row = await queries.published_workflow(get_container(request).engine, app["id"])
    return (await _workflow_views(request, [row], draft=False))[0] if row else None


@router.get("/apps/{app_id}/workflows")
async def list_versions(request: Request, app_id: str, user: ConsoleUser = Editor,
                        page: Page = 1, limit: Annotated[int, Query(ge=1, le=100)] = 10,
                        named_only: bool = False,
                        user_id: Annotated[UUID | None, Query()] = None) -> dict[str, Any]:
    app = await workflow_app(request, user, app_id)
    rows, has_more = await queries.published_versions(
        get_container(request).engine, app["id"], page=page, limit=limit,
        named_only=named_only, created_by=user_id)
    return {"items": await _workflow_views(request, rows, draft=False), "page": page,
            "limit": limit, "has_more": has_more}


@dataclass(frozen=True)
class DraftRun:
    run_id: UUID
    task_id: UUID
    started: bool  # False: the start was sent, but its outcome not known in time


async def start_draft_run(request: Request, user: ConsoleUser, app: dict[str, Any],
                          inputs: dict[str, Any], files: list[dict[str, Any]],
                          node_id: str | None = None) -> DraftRun:
    """A debug run of the draft as it is now (or of one node of it, with `inputs` as that
    node's variable values): the draft frozen as a version of kind "draft", then a run on it
    triggered from "debugging", owned by the app's console (its stop route)."""
    c = get_container(request)
    snapshot_id, run_id, task_id = uuid4(), uuid4(), uuid4()
    await c.kv.set(task_owner_key(task_id), run_owner(app["id"], None),
                   ttl=c.settings.TASK_STREAM_TTL_SECONDS)
    sender = command_gateway(request)
    await sender.send(cmd.SnapshotWorkflowDraft(app_id=app["id"], workflow_id=snapshot_id),
                      aggregate_id=snapshot_id, tenant_id=user.tenant_id,
                      actor_id=user.account_id, read_your_writes=False)
    try:
        await sender.send(
            cmd.StartWorkflowRun(run_id=run_id, app_id=app["id"], workflow_id=snapshot_id,
                                 task_id=task_id, mode=app["mode"],
                                 triggered_from="debugging", user=str(user.account_id),
                                 inputs=inputs, files=files, node_id=node_id),
            aggregate_id=run_id, tenant_id=user.tenant_id, actor_id=user.account_id,
            read_your_writes=False)
    except CommandPending:
        return DraftRun(run_id, task_id, started=False)
    return DraftRun(run_id, task_id, started=True)


def _accepted(run: DraftRun) -> JSONResponse:
    """202: the run goes on; the console follows it in its run list."""
    return JSONResponse(status_code=202, content={
        "result": "accepted", "workflow_run_id": str(run.run_id), "task_id": str(run.task_id)})


@router.post("/apps/{app_id}/workflows/draft/run")
async def run_draft(request: Request, app_id: str, body: api.DraftRunRequest,
                    user: ConsoleUser = Editor) -> Any:
    """The editor's debug run, streamed as the Service API streams a run (Dify: workflow
    apps; an advanced-chat app's debug run is a chat message)."""
    app = await workflow_app(request, user, app_id, modes=("workflow",))
    engine = get_container(request).engine
    row = await queries.workflow_draft(engine, app["id"])
    inputs, files = await run_arguments(
        engine, app["id"], user.tenant_id, str(user.account_id),
        row["graph"] if row else default_graph(app["mode"]), body.inputs, body.files)
    run = await start_draft_run(request, user, app, inputs, files)
    if not run.started:
        return _accepted(run)
    return streamed_run(request, run.run_id, run.task_id,
                        resume="follow it in the app's run history.")


@router.post("/apps/{app_id}/workflows/draft/nodes/{node_id}/run")
async def run_draft_node(request: Request, app_id: str, node_id: str,
                         body: api.NodeRunRequest, user: ConsoleUser = Editor) -> Any:
    """One node of the draft on the given variable values, answered when it finished: its
    execution (Dify's node execution fields)."""
    app = await workflow_app(request, user, app_id)
    run = await start_draft_run(request, user, app, body.inputs, [], node_id=node_id)
    if not run.started:
        return _accepted(run)
    limit = get_container(request).settings.CHAT_BLOCKING_TIMEOUT_SECONDS
    try:
        async with asyncio.timeout(limit):
            async for read in entries(request, task_stream_key(run.task_id), "0", RUN_CLOSING):
                for _, event in read:
                    if event["event"] == "node_finished":
                        return event["data"]
                    if event["event"] == "error":
                        return JSONResponse({k: event[k] for k in ("code", "message", "status")},
                                            status_code=event["status"])
    except (StreamInterrupted, TimeoutError):
        return _accepted(run)
    raise EddyError()  # a single-node run's stream has the node's end before its own


@router.post("/apps/{app_id}/workflow-runs/tasks/{task_id}/stop")
async def stop_draft_run(request: Request, app_id: str, task_id: str,
                         user: ConsoleUser = Editor) -> dict[str, str]:
    """Stop a debug run (any gateway process; a paused one at once); another app's task is
    silently not stopped, as the Service API's stop does."""
    app = await workflow_app(request, user, app_id)
    parsed = maybe_uuid(task_id)
    owner = await get_container(request).kv.get(task_owner_key(parsed)) if parsed else None
    if parsed is not None and owner == run_owner(app["id"], None):
        await stop_task(request, app["id"], parsed, owner, user.tenant_id, user.account_id)
    return {"result": "success"}
