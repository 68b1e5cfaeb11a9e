"""Workflow runs (Service API): a run is a command; the engine (a consumer group) executes it
onto the run's task stream (key-value store), which this relays as server-sent events
(streaming) or folds into the finished run (blocking). Any gateway process can stop a task
or relay a run's events again (`GET /v1/workflow/{workflow_run_id}/events`, Last-Event-ID).
The run's inputs are checked against the version's start node before anything is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID, uuid4, uuid5

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from events.envelope import Envelope
from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.commanding import CommandPending
from gateway.deps import command_gateway, get_container, maybe_uuid
from gateway.platform.service import app_of_key
from gateway.task_events import SSE_HEADERS, StreamInterrupted, entries, resume_point, sse
from gateway.workflow.files import run_arguments
from schemas.base import EDDY_NAMESPACE, EventPayload
from schemas.conversation import api as conversation_api
from schemas.conversation.naming import (
    TERMINAL_STREAM_EVENTS,
    end_user_id_for,
    task_owner_key,
    task_stop_key,
    task_stream_key,
)
from schemas.errors import (
    DraftWorkflowNotRunnable,
    EddyError,
    NotFound,
    NotWorkflowApp,
    WorkflowNotFound,
    WorkflowNotPublished,
)
from schemas.workflow import api
from schemas.workflow import commands as cmd
from schemas.workflow import events as ev
from schemas.workflow.naming import (
    WORKFLOW_END_STREAM_EVENTS,
    WORKFLOW_PAUSE_STREAM_EVENT,
    published_workflow_id_for,
    run_owner,
)
from schemas.workflow.stream import StreamHead

router = APIRouter(prefix="/v1")
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                               max_length=255)]
# A client's stream of a run ends at its end, or at a pause (Dify's), unless it follows the
# run across pauses.
RUN_CLOSING = (*WORKFLOW_END_STREAM_EVENTS, WORKFLOW_PAUSE_STREAM_EVENT)
VERSION_CACHE_SIZE = 256


async def workflow_app_of_key(request: Request, key: ApiKeyPrincipal,
                        modes: tuple[str, ...] = ("workflow",)) -> dict[str, Any]:
    app = await app_of_key(request, key)
    if app["mode"] not in modes:
        raise NotWorkflowApp()
    return app


async def _version(request: Request, app_id: UUID,
                   workflow_id: str | None) -> tuple[UUID, ev.WorkflowVersionCreated]:
    """The version a run would execute: the app's published one, or the one named (a
    published version of this app)."""
    store = get_container(request).store
    if workflow_id is None:
        published = [e.payload for e in await asyncio.to_thread(
            store.load, published_workflow_id_for(app_id))
            if isinstance(e.payload, ev.WorkflowPublished)]
        if not published:
            raise WorkflowNotPublished()
        chosen = published[-1].workflow_id
    else:
        parsed = maybe_uuid(workflow_id)
        if parsed is None:
            raise DraftWorkflowNotRunnable(f"Invalid workflow ID format: {workflow_id}.")
        chosen = parsed
    cache: dict[UUID, ev.WorkflowVersionCreated] = _versions(request)
    if chosen not in cache:
        created = [e.payload for e in await asyncio.to_thread(store.load, chosen)
                   if isinstance(e.payload, ev.WorkflowVersionCreated)]
        if not created:
            raise WorkflowNotFound(f"Workflow not found with id: {chosen}")
        if len(cache) >= VERSION_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[chosen] = created[0]  # immutable: kept
    version = cache[chosen]
    if version.app_id != app_id:
        raise WorkflowNotFound(f"Workflow not found with id: {chosen}")
    if version.kind == "draft":
        raise DraftWorkflowNotRunnable(
            f"Cannot use draft workflow version. Workflow ID: {chosen}. Please use a "
            "published workflow version or leave workflow_id empty.")
    return chosen, version


async def published_version(request: Request, app_id: UUID) -> ev.WorkflowVersionCreated:
    """The version the app's runs execute now (WorkflowNotPublished: none)."""
    return (await _version(request, app_id, None))[1]


def _versions(request: Request) -> dict[UUID, ev.WorkflowVersionCreated]:
    state = request.app.state
    if not hasattr(state, "workflow_versions"):
        state.workflow_versions = {}
    return state.workflow_versions  # type: ignore[no-any-return]


def _run_ids(app_id: UUID, user: str, idempotency_key: str | None) -> tuple[UUID, UUID]:
    """(run, task) ids: new ones, or with an Idempotency-Key the same for every retry of
    the request (so retries join the first one's run)."""
    if not idempotency_key:
        return uuid4(), uuid4()
    scope = uuid5(EDDY_NAMESPACE, f"workflow-idempotency:{app_id}:{user}:{idempotency_key}")
    return uuid5(scope, "run"), uuid5(scope, "task")


async def _run(request: Request, key: ApiKeyPrincipal, body: api.WorkflowRunRequest,
               workflow_id: str | None, idempotency_key: str | None) -> Any:
    c = get_container(request)
    app = await workflow_app_of_key(request, key)
    chosen, version = await _version(request, app["id"], workflow_id)
    inputs, files = await run_arguments(c.engine, app["id"], key.tenant_id, body.user,
                                        version.graph, body.inputs, body.files)
    run_id, task_id = _run_ids(app["id"], body.user, idempotency_key)
    owner = run_owner(app["id"], end_user_id_for(app["id"], body.user))
    await c.kv.set(task_owner_key(task_id), owner, ttl=c.settings.TASK_STREAM_TTL_SECONDS)
    try:
        await command_gateway(request).send(
            cmd.StartWorkflowRun(run_id=run_id, app_id=app["id"], workflow_id=chosen,
                                 task_id=task_id, mode="workflow", triggered_from="app-run",
                                 user=body.user, inputs=inputs,
                                 files=files),
            aggregate_id=run_id, tenant_id=key.tenant_id, actor_id=key.actor_id,
            idempotency_key=idempotency_key and f"{app['id']}:{body.user}:{idempotency_key}",
            read_your_writes=False)
    except CommandPending:
        return _pending(run_id, task_id, body.user)
    if body.response_mode == "streaming":
        return streamed_run(request, run_id, task_id)
    try:
        async with asyncio.timeout(c.settings.CHAT_BLOCKING_TIMEOUT_SECONDS):
            return await _blocking(request, task_stream_key(task_id))
    except (StreamInterrupted, TimeoutError):
        return _pending(run_id, task_id, body.user)


def streamed_run(request: Request, run_id: UUID, task_id: UUID,
                 resume: str | None = None) -> StreamingResponse:
    """A run's events from its start as server-sent events, until it ends or pauses (the
    console's debug runs answer the same way, `resume` saying where to read the rest)."""
    return StreamingResponse(
        sse(request, task_stream_key(task_id), "0", RUN_CLOSING,
            _interrupted(task_id, run_id, resume)),
        media_type="text/event-stream", headers=SSE_HEADERS)


def _pending(run_id: UUID, task_id: UUID, user: str) -> JSONResponse:
    """202: the run was accepted and goes on whatever happens to this request; its events
    can be read with the app's key."""
    return JSONResponse(status_code=202, content={
        "result": "accepted", "workflow_run_id": str(run_id), "task_id": str(task_id),
        "events_url": f"/v1/workflow/{run_id}/events?user={quote(user)}"})


def _interrupted(task_id: UUID, run_id: UUID,
                 resume: str | None = None) -> Callable[[], dict[str, Any]]:
    resume = resume or f"resume with GET /v1/workflow/{run_id}/events and Last-Event-ID."

    def event() -> dict[str, Any]:
        return {"event": "error", "task_id": str(task_id), "workflow_run_id": str(run_id),
                "status": 503, "code": "stream_interrupted",
                "message": f"The run goes on, but its stream cannot be read now: {resume}"}
    return event


async def _blocking(request: Request, stream: str) -> Any:
    workflow_id = None
    async for read in entries(request, stream, "0", RUN_CLOSING):
        for _, event in read:
            if event["event"] == "workflow_started":
                workflow_id = event["data"]["workflow_id"]
            elif event["event"] == "error":
                return JSONResponse({k: event[k] for k in ("code", "message", "status")},
                                    status_code=event["status"])
            if event["event"] == "workflow_finished":
                return {"task_id": event["task_id"],
                        "workflow_run_id": event["workflow_run_id"], "data": {
                            k: event["data"][k] for k in (
                                "id", "workflow_id", "status", "outputs", "error",
                                "elapsed_time", "total_tokens", "total_steps",
                                "created_at", "finished_at")}}
            if event["event"] == WORKFLOW_PAUSE_STREAM_EVENT:
                data = event["data"]
                return {"task_id": event["task_id"],
                        "workflow_run_id": event["workflow_run_id"], "data": {
                            "id": event["workflow_run_id"], "workflow_id": workflow_id,
                            "status": "paused", "outputs": data["outputs"], "error": None,
                            "elapsed_time": data["elapsed_time"],
                            "total_tokens": data["total_tokens"],
                            "total_steps": data["total_steps"],
                            "created_at": data["created_at"], "finished_at": None}}
    raise EddyError()  # the stream ends only after its closing event


@router.post("/workflows/run")
async def run_published(request: Request, body: api.WorkflowRunRequest,
                        key: ApiKeyPrincipal = AppKey,
                        idempotency_key: IdempotencyKey = None) -> Any:
    return await _run(request, key, body, None, idempotency_key)


@router.post("/workflows/{workflow_id}/run")
async def run_version(request: Request, workflow_id: str, body: api.WorkflowRunRequest,
                      key: ApiKeyPrincipal = AppKey,
                      idempotency_key: IdempotencyKey = None) -> Any:
    return await _run(request, key, body, workflow_id, idempotency_key)


@router.post("/workflows/tasks/{task_id}/stop")
async def stop_run(request: Request, task_id: str, body: conversation_api.StopRequest,
                   key: ApiKeyPrincipal = AppKey) -> dict[str, str]:
    """Any gateway process; the engine sees the request within STOP_POLL_SECONDS. As Dify,
    the stop applies to the app's task whichever user asks; another app's (or none) is
    silently not stopped."""
    app = await workflow_app_of_key(request, key)
    c = get_container(request)
    parsed = maybe_uuid(task_id)
    owner = await c.kv.get(task_owner_key(parsed)) if parsed else None
    if parsed is not None and owner is not None and owner.startswith(f"{app['id']}:"):
        await stop_task(request, app["id"], parsed, owner, key.tenant_id, key.actor_id)
    return {"result": "success"}


async def stop_task(request: Request, app_id: UUID, task_id: UUID, owner: str,
                    tenant_id: UUID, actor_id: UUID | None) -> None:
    """Stop an app's task (its owner checked by the caller): the engine driving it sees the
    request within STOP_POLL_SECONDS; a run paused for human input, which no member holds,
    is ended stopped here and now (the run's id is on its stream's first event)."""
    c = get_container(request)
    await c.kv.set(task_stop_key(task_id), owner, ttl=c.settings.TASK_STREAM_TTL_SECONDS)
    first = await c.kv.read(task_stream_key(task_id), "0", count=1, block_ms=0)
    run_id = maybe_uuid(str(orjson.loads(first[0][1]).get("workflow_run_id"))) \
        if first else None
    if run_id is not None:
        await command_gateway(request).send(
            cmd.StopWorkflowRun(run_id=run_id, app_id=app_id), aggregate_id=run_id,
            tenant_id=tenant_id, actor_id=actor_id, read_your_writes=False)


@router.get("/workflow/{workflow_run_id}/events")
async def run_events(request: Request, workflow_run_id: str,
                     user: Annotated[str, Query(min_length=1, max_length=255)],
                     continue_on_pause: bool = False,
                     last_event_id: Annotated[str | None, Header(alias="Last-Event-ID",
                                                                 max_length=64)] = None,
                     key: ApiKeyPrincipal = AppKey) -> StreamingResponse:
    """A run's events again, after Last-Event-ID (from the start without it): a client
    whose stream dropped gets the rest, without gaps or repeats. A run whose stream
    expired answers its end alone."""
    c = get_container(request)
    app = await workflow_app_of_key(request, key, ("workflow", "advanced-chat"))
    run_id = maybe_uuid(workflow_run_id)
    history = await asyncio.to_thread(c.store.load, run_id) if run_id else []
    begun = history[0].payload if history else None
    if not isinstance(begun, ev.WorkflowRunStarted) or begun.app_id != app["id"] \
            or begun.end_user_id != end_user_id_for(app["id"], user):
        raise NotFound("Workflow run not found")
    assert run_id is not None
    # an advanced-chat run's stream ends with its message's end (after workflow_finished)
    ends = TERMINAL_STREAM_EVENTS if begun.mode == "advanced-chat" \
        else WORKFLOW_END_STREAM_EVENTS
    closing = ends if continue_on_pause else (*ends, WORKFLOW_PAUSE_STREAM_EVENT)
    stream = task_stream_key(begun.task_id)
    if not await c.kv.length(stream) and isinstance(history[-1].payload, ev.RUN_ENDS):
        return StreamingResponse(_ended(request, history), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    after = await resume_point(c.kv, stream, last_event_id, closing)
    return StreamingResponse(
        sse(request, stream, after, closing, _interrupted(begun.task_id, run_id)),
        media_type="text/event-stream", headers=SSE_HEADERS)


async def _ended(request: Request, history: list[Envelope[EventPayload]]
                 ) -> AsyncIterator[bytes]:
    """The end of a run whose stream expired, as its one event."""
    first, last = history[0], history[-1]
    begun, end = first.payload, last.payload
    assert isinstance(begun, ev.WorkflowRunStarted) and isinstance(end, ev.RUN_ENDS)
    head = StreamHead(task_id=begun.task_id, run_id=first.aggregate_id,
                      workflow_id=begun.workflow_id, mode=begun.mode,
                      created_at=int(first.occurred_at.timestamp()),
                      conversation_id=begun.conversation_id, message_id=begun.message_id)
    # A run that succeeded went on past each node that failed (by its error strategy):
    # Dify's exceptions_count, and its status partial-succeeded.
    exceptions = sum(1 for e in history if isinstance(e.payload, ev.WorkflowNodeFailed))
    status = {ev.WorkflowRunSucceeded: "partial-succeeded" if exceptions else "succeeded",
              ev.WorkflowRunFailed: "failed", ev.WorkflowRunStopped: "stopped"}[type(end)]
    outputs = None
    if isinstance(end, ev.WorkflowRunSucceeded):
        outputs = orjson.loads(await get_container(request).storage.load(end.outputs_ref)) \
            if end.outputs_ref else end.outputs
    event = head.workflow_finished(
        status=status, outputs=outputs,
        error=end.error if isinstance(end, ev.WorkflowRunFailed) else None,
        elapsed_time=end.elapsed_time, total_tokens=end.total_tokens,
        total_steps=end.total_steps, finished_at=int(last.occurred_at.timestamp()),
        fact=None,
        exceptions_count=exceptions if isinstance(end, ev.WorkflowRunSucceeded) else None)
    yield b"data: " + orjson.dumps(event) + b"\n\n"
