"""Chat and completion messages (Service API): a question is a command; the chat processor
answers it onto the task's stream (key-value store), which this relays as server-sent events
(streaming) or folds into one answer (blocking). Any gateway process can stop a task or
replay its events (`GET /v1/chat-messages/{task_id}/events` with Last-Event-ID)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID, uuid4, uuid5

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.commanding import CommandPending
from gateway.conversation.config import app_config
from gateway.conversation.files import message_files
from gateway.deps import command_gateway, get_container, maybe_uuid
from gateway.platform.service import app_of_key
from gateway.read_cache import cached
from gateway.task_events import (
    SSE_HEADERS,
    StreamInterrupted,
    entries,
    resume_point,
    sse,
)
from projections.platform.models import ResolvedModel, default_model, resolve_model
from schemas.base import EDDY_NAMESPACE
from schemas.conversation import api
from schemas.conversation import commands as cmd
from schemas.conversation.config import AppModelConfig, ModelSettings
from schemas.conversation.naming import (
    TERMINAL_STREAM_EVENTS,
    app_config_id_for,
    end_user_id_for,
    task_owner,
    task_owner_key,
    task_stop_key,
    task_stream_key,
)
from schemas.errors import (
    AppUnavailable,
    BadRequest,
    ConversationNotFound,
    EddyError,
    NotChatApp,
    NotCompletionApp,
    NotFound,
    ServerBusy,
)

router = APIRouter(prefix="/v1")
CHAT_MODES = ("chat", "advanced-chat")  # advanced-chat: a workflow run answers
# (request, app, key, body) -> the message's (inputs, files), checked before anything is
# recorded (Dify's 400s), for an app mode whose messages another context answers: the
# workflow context registers advanced-chat's (its published version's start node).
MessagePreparer = Callable[[Request, dict[str, Any], ApiKeyPrincipal,
                            api.CompletionMessageRequest],
                           Awaitable[tuple[dict[str, Any], list[dict[str, Any]]]]]
MESSAGE_PREPARERS: dict[str, MessagePreparer] = {}
# (request, key, task id, owner) -> None: how a task is stopped in an app mode whose messages
# another context answers, beyond the stop key every answer watches (the workflow context
# ends a chatflow run paused for human input, which nothing watches, at once).
TaskStopper = Callable[[Request, ApiKeyPrincipal, UUID, str], Awaitable[None]]
TASK_STOPPERS: dict[str, TaskStopper] = {}
# A chatflow's run paused for human input also closes its message's stream (its events go on
# once the form is answered: read them with GET …/events and Last-Event-ID).
PAUSED_STREAM_EVENT = "workflow_paused"
STREAM_CLOSES = (*TERMINAL_STREAM_EVENTS, PAUSED_STREAM_EVENT)
# Seconds between reads of a blocking answer's stream: nobody sees its tokens one by one, so
# fewer, fuller reads (a Redis round trip each) cost less; the answer ends at most this late.
BLOCKING_READ_PACE = 0.03
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                               max_length=255)]


class AnswerSlots:
    """Answers this gateway process relays at once (CHAT_MAX_OPEN_STREAMS). A message past
    the limit is refused before anything is recorded (503 + Retry-After): back-pressure at
    the door rather than a connection pool failing mid-answer."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0

    def take(self) -> None:
        if self.open >= self.limit:
            raise ServerBusy("Too many answers are streaming from this server; retry shortly.")
        self.open += 1

    def give(self) -> None:
        self.open -= 1


def _slots(request: Request) -> AnswerSlots:
    state = request.app.state
    if not hasattr(state, "answer_slots"):
        state.answer_slots = AnswerSlots(get_container(request).settings.CHAT_MAX_OPEN_STREAMS)
    return state.answer_slots  # type: ignore[no-any-return]


def validate_inputs(config: AppModelConfig, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs the app's form declares, checked as Dify checks them (its messages)."""
    checked: dict[str, Any] = {}
    for kind, control in config.form_controls():
        name, value = control.variable, inputs.get(control.variable)
        if value is None or value == "":
            if control.required:
                raise BadRequest(f"{name} is required in input form")
            checked[name] = control.default or ""
            continue
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise BadRequest(f"{name} in input form must be a valid number")
            try:
                float(value)
            except ValueError:
                raise BadRequest(f"{name} in input form must be a valid number") from None
        elif not isinstance(value, str):
            raise BadRequest(f"{name} in input form must be a string")
        elif kind == "select" and value not in control.options:
            raise BadRequest(f"{name} in input form must be one of the following: "
                             f"{control.options}")
        elif control.max_length is not None and len(value) > control.max_length:
            raise BadRequest(f"{name} in input form must be less than {control.max_length} "
                             "characters")
        checked[name] = value
    return checked


async def model_for(request: Request, tenant_id: UUID, config: AppModelConfig) -> ResolvedModel:
    """The model that answers for the app: its own, or (never configured) the workspace's
    default LLM. None usable: Dify's provider_not_initialize."""
    c = get_container(request)
    model = config.model
    if model is None:
        default = await default_model(c.engine, tenant_id, "llm")
        provider, name = default if default else (None, None)
    else:
        provider, name = model.provider, model.name
    return await resolve_model(c.engine, c.settings.SECRET_KEY, tenant_id, "llm", provider,
                               name)


async def _with_model(request: Request, tenant_id: UUID,
                      config: AppModelConfig) -> AppModelConfig:
    """The config naming the model that will answer (checked now: a missing one is a 400
    before anything is recorded)."""
    resolved = await model_for(request, tenant_id, config)
    if config.model is not None:
        return config
    return config.model_copy(update={"model": ModelSettings(
        provider=resolved.provider, name=resolved.model,
        mode="completion" if resolved.mode == "completion" else "chat")})


async def _run_config(request: Request, tenant_id: UUID, app: dict[str, Any]) -> AppModelConfig:
    """The app's config naming the model that will answer, kept by this process until a
    projection notice names the app, its config or its workspace (models and credentials
    are the workspace's). The chat processor resolves the model again anyway."""
    async def load() -> tuple[AppModelConfig, tuple[UUID, ...]]:
        config = await _with_model(request, tenant_id, await app_config(request, app))
        return config, (app["id"], app_config_id_for(app["id"]), tenant_id)

    config = await cached(request, "run_configs", app["id"], load)
    assert config is not None  # load never misses: it raises
    return config


@dataclass(frozen=True)
class _Task:
    """What a client needs to follow an accepted message from elsewhere."""

    task_id: UUID
    message_id: UUID
    conversation_id: UUID
    user: str

    def pending(self) -> JSONResponse:
        """202: the message was accepted and is answered whatever happens to this request;
        its events (and so its answer) can be read with the app's own key."""
        return JSONResponse(status_code=202, content={
            "result": "accepted", "task_id": str(self.task_id),
            "message_id": str(self.message_id), "conversation_id": str(self.conversation_id),
            "events_url": f"/v1/chat-messages/{self.task_id}/events?user={quote(self.user)}",
        })


def _task_ids(app_id: UUID, user: str, conversation: UUID | None,
              idempotency_key: str | None) -> tuple[UUID, UUID, UUID]:
    """(task, message, conversation) ids: new ones, or with an Idempotency-Key the same
    ones for every retry of the request (so retries join the first one's task)."""
    if not idempotency_key:
        return uuid4(), uuid4(), conversation or uuid4()
    scope = uuid5(EDDY_NAMESPACE, f"chat-idempotency:{app_id}:{user}:{idempotency_key}")
    return (uuid5(scope, "task"), uuid5(scope, "message"),
            conversation or uuid5(scope, "conversation"))


async def _ask(request: Request, key: ApiKeyPrincipal, app: dict[str, Any],
               body: api.CompletionMessageRequest, conversation: str | None,
               idempotency_key: str | None) -> Any:
    slots = _slots(request)
    slots.take()
    try:
        answer = await _accept(request, key, app, body, conversation, idempotency_key)
    except BaseException:
        slots.give()
        raise
    if isinstance(answer, StreamingResponse):
        answer.body_iterator = _giving_back(answer.body_iterator, slots)
    else:
        slots.give()
    return answer


async def _giving_back(body: AsyncIterator[Any], slots: AnswerSlots) -> AsyncIterator[Any]:
    """The stream's chunks; its slot is given back however the stream ends (done, the
    client gone, cancelled)."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        slots.give()


async def _accept(request: Request, key: ApiKeyPrincipal, app: dict[str, Any],
                  body: api.CompletionMessageRequest, conversation: str | None,
                  idempotency_key: str | None) -> Any:
    c = get_container(request)
    prepare = MESSAGE_PREPARERS.get(app["mode"])
    if prepare is not None:  # answered by another context, which has no model config here
        config = AppModelConfig()
        inputs, files = await prepare(request, app, key, body)
    else:
        config = await _run_config(request, key.tenant_id, app)
        inputs = validate_inputs(config, body.inputs)
        files = await message_files(request, app, body.user, body.files or [],
                                    config.file_upload.image)
    existing = maybe_uuid(conversation) if conversation else None
    if conversation and existing is None:
        raise ConversationNotFound()
    task_id, message_id, conversation_id = _task_ids(app["id"], body.user, existing,
                                                     idempotency_key)
    task = _Task(task_id, message_id, conversation_id, body.user)
    owner = task_owner(app["id"], end_user_id_for(app["id"], body.user))
    ttl = c.settings.TASK_STREAM_TTL_SECONDS
    await c.kv.set(task_owner_key(task_id), owner, ttl=ttl)
    # Accepted once decided (a missing conversation is refused here, as an HTTP error); the
    # answer is read from the task's stream, not from the read model: no projection wait.
    try:
        await command_gateway(request).send(
            cmd.SendMessage(conversation_id=conversation_id, message_id=message_id,
                            task_id=task_id, app_id=app["id"], mode=app["mode"],
                            user=body.user, query=body.query, inputs=inputs,
                            config=config.model_dump(mode="json"),
                            new_conversation=existing is None, files=files),
            aggregate_id=conversation_id, tenant_id=key.tenant_id, actor_id=key.actor_id,
            idempotency_key=idempotency_key and f"{app['id']}:{body.user}:{idempotency_key}",
            read_your_writes=False)
    except CommandPending:
        return task.pending()  # published: the app key can follow the task, not a console URL
    stream = task_stream_key(task_id)
    if body.response_mode == "streaming":
        return StreamingResponse(_sse(request, stream, "0", task_id),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    try:
        # A server-side limit: a client is never held longer (a hung model, an outage).
        async with asyncio.timeout(c.settings.CHAT_BLOCKING_TIMEOUT_SECONDS):
            answer = await _blocking(request, stream, app["mode"])
    except (StreamInterrupted, TimeoutError):
        return task.pending()
    return task.pending() if answer is None else answer


def _interrupted(task_id: UUID) -> Callable[[], dict[str, Any]]:
    def event() -> dict[str, Any]:
        return {"event": "error", "task_id": str(task_id), "status": 503,
                "code": "stream_interrupted",
                "message": "The answer goes on, but its stream cannot be read now: resume "
                           f"with GET /v1/chat-messages/{task_id}/events and Last-Event-ID."}
    return event


def _sse(request: Request, stream: str, after: str, task_id: UUID) -> AsyncIterator[bytes]:
    return sse(request, stream, after, STREAM_CLOSES, _interrupted(task_id))


async def _blocking(request: Request, stream: str, mode: str) -> Any:
    """The answer, or None when it waits for human input (a chatflow's paused run)."""
    answer: list[str] = []
    async for read in entries(request, stream, "0", STREAM_CLOSES):
        for _, event in read:
            if event["event"] == PAUSED_STREAM_EVENT:
                return None
            if event["event"] == "message":
                answer.append(event["answer"])
            elif event["event"] == "message_replace":
                answer = [event["answer"]]
            elif event["event"] == "error":
                return JSONResponse({k: event[k] for k in ("code", "message", "status")},
                                    status_code=event["status"])
            elif event["event"] == "message_end":
                reply = {"event": "message", "task_id": event["task_id"],
                         "id": event["message_id"], "message_id": event["message_id"],
                         "mode": mode, "answer": "".join(answer),
                         "metadata": event["metadata"], "created_at": event["created_at"]}
                if "conversation_id" in event:
                    reply["conversation_id"] = event["conversation_id"]
                return reply
        if read:  # not closed yet: the tokens arriving meanwhile come in one read, not one each
            await asyncio.sleep(BLOCKING_READ_PACE)
    raise EddyError()  # the stream ends only after its closing event


@router.post("/chat-messages")
async def chat_message(request: Request, body: api.ChatMessageRequest,
                       key: ApiKeyPrincipal = AppKey,
                       idempotency_key: IdempotencyKey = None) -> Any:
    app = await app_of_key(request, key)
    if app["mode"] == "agent-chat":
        raise AppUnavailable("Agent apps are not supported yet: use a chat or completion app.")
    if app["mode"] not in CHAT_MODES:
        raise NotChatApp()
    return await _ask(request, key, app, body, body.conversation_id or None, idempotency_key)


@router.post("/completion-messages")
async def completion_message(request: Request, body: api.CompletionMessageRequest,
                             key: ApiKeyPrincipal = AppKey,
                             idempotency_key: IdempotencyKey = None) -> Any:
    app = await app_of_key(request, key)
    if app["mode"] != "completion":
        raise NotCompletionApp()
    return await _ask(request, key, app, body, None, idempotency_key)


async def _stop(request: Request, key: ApiKeyPrincipal, task_id: str, user: str,
                mode: str) -> dict[str, str]:
    """Any gateway process: the task's worker sees the request on its next chunk. A task of
    another user, another app (or none) is silently not stopped, as Dify does; nor is its
    stop request touched (the owner is recorded before the task is sent)."""
    c = get_container(request)
    parsed = maybe_uuid(task_id)
    assert key.app_id is not None
    owner = task_owner(key.app_id, end_user_id_for(key.app_id, user))
    if parsed is not None and await c.kv.get(task_owner_key(parsed)) == owner:
        await c.kv.set(task_stop_key(parsed), owner, ttl=c.settings.TASK_STREAM_TTL_SECONDS)
        if (stopper := TASK_STOPPERS.get(mode)) is not None:
            await stopper(request, key, parsed, owner)
    return {"result": "success"}


@router.post("/chat-messages/{task_id}/stop")
async def stop_chat(request: Request, task_id: str, body: api.StopRequest,
                    key: ApiKeyPrincipal = AppKey) -> dict[str, str]:
    mode = (await app_of_key(request, key))["mode"]
    if mode not in CHAT_MODES:
        raise NotChatApp()
    return await _stop(request, key, task_id, body.user, mode)


@router.post("/completion-messages/{task_id}/stop")
async def stop_completion(request: Request, task_id: str, body: api.StopRequest,
                          key: ApiKeyPrincipal = AppKey) -> dict[str, str]:
    if (await app_of_key(request, key))["mode"] != "completion":
        raise NotCompletionApp()
    return await _stop(request, key, task_id, body.user, "completion")


@router.get("/chat-messages/{task_id}/events")
async def task_events(request: Request, task_id: str,
                      user: Annotated[str, Query(min_length=1, max_length=255)],
                      last_event_id: Annotated[str | None, Header(alias="Last-Event-ID",
                                                                  max_length=64)] = None,
                      key: ApiKeyPrincipal = AppKey) -> StreamingResponse:
    """A task's events again, after Last-Event-ID (from the start without it): a client
    whose stream dropped gets the rest, without gaps or repeats."""
    c = get_container(request)
    parsed = maybe_uuid(task_id)
    assert key.app_id is not None
    owner = await c.kv.get(task_owner_key(parsed)) if parsed else None
    if owner is None or owner != task_owner(key.app_id, end_user_id_for(key.app_id, user)):
        raise NotFound("Task not found (unknown, another user's, or expired).")
    stream = task_stream_key(parsed)  # type: ignore[arg-type]
    after = await resume_point(c.kv, stream, last_event_id, STREAM_CLOSES)
    return StreamingResponse(_sse(request, stream, after, parsed),  # type: ignore[arg-type]
                             media_type="text/event-stream", headers=SSE_HEADERS)
