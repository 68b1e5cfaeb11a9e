"""Chat and completion messages (Service API): a question is a command; the chat processor
answers it onto the task's stream (key-value store), which this relays as server-sent events
(streaming) or folds into one answer (blocking). Any gateway process can stop a task or
replay its events (`GET /v1/chat-messages/{task_id}/events` with Last-Event-ID)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID, uuid4

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.conversation.config import app_config
from gateway.conversation.files import message_files
from gateway.conversation.run_configs import run_configs
from gateway.deps import command_gateway, get_container, maybe_uuid
from gateway.platform.service import app_of_key
from projections.platform.models import ResolvedModel, default_model, resolve_model
from schemas.conversation import api
from schemas.conversation import commands as cmd
from schemas.conversation.config import AppModelConfig, ModelSettings
from schemas.conversation.naming import (
    TERMINAL_STREAM_EVENTS,
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
)

router = APIRouter(prefix="/v1")
PING_SECONDS = 10.0  # Dify's keep-alive: `event: ping` after this long without an event
READ_BLOCK_MS = 1000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
    """The app's config naming the model that will answer, from this process's cache when
    nothing it was read from changed since."""
    cache = run_configs(request)
    cached = cache.get(app["id"]) if cache is not None else None
    if cached is not None:
        return cached
    generation = cache.generation if cache is not None else 0
    config = await _with_model(request, tenant_id, await app_config(request, app))
    if cache is not None:
        cache.keep(app["id"], tenant_id, config, generation)
    return config


async def _ask(request: Request, key: ApiKeyPrincipal, app: dict[str, Any],
               body: api.CompletionMessageRequest, conversation: str | None) -> Any:
    c = get_container(request)
    config = await _run_config(request, key.tenant_id, app)
    inputs = validate_inputs(config, body.inputs)
    files = await message_files(request, app, body.user, body.files or [],
                                config.file_upload.image)
    conversation_id = maybe_uuid(conversation) if conversation else uuid4()
    if conversation_id is None:
        raise ConversationNotFound()
    task_id, message_id = uuid4(), uuid4()
    owner = task_owner(app["id"], end_user_id_for(app["id"], body.user))
    ttl = c.settings.TASK_STREAM_TTL_SECONDS
    await c.kv.set(task_owner_key(task_id), owner, ttl=ttl)
    # Accepted once decided (a missing conversation is refused here, as an HTTP error); the
    # answer is read from the task's stream, not from the read model: no projection wait.
    await command_gateway(request).send(
        cmd.SendMessage(conversation_id=conversation_id, message_id=message_id, task_id=task_id,
                        app_id=app["id"], mode=app["mode"], user=body.user, query=body.query,
                        inputs=inputs, config=config.model_dump(mode="json"),
                        new_conversation=not conversation, files=files),
        aggregate_id=conversation_id, tenant_id=key.tenant_id, actor_id=key.actor_id,
        read_your_writes=False)
    stream = task_stream_key(task_id)
    if body.response_mode == "streaming":
        return StreamingResponse(_sse(request, stream, "0"), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    return await _blocking(request, stream, app["mode"])


async def _entries(request: Request, stream: str, after: str) -> AsyncIterator[
        list[tuple[str, dict[str, Any]]]]:
    """The task's events after `after` as lists of (id, event), one list per read (what
    arrived together goes out together: one write to the client, not one per token), and
    an empty list after each PING_SECONDS without one; ends after the closing event."""
    kv = get_container(request).kv
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        reply = await kv.read(stream, after, count=100, block_ms=READ_BLOCK_MS)
        if not reply:
            if loop.time() - quiet_since >= PING_SECONDS:
                quiet_since = loop.time()
                yield []
            continue
        quiet_since = loop.time()
        read = []
        for after, entry in reply:
            read.append((after, orjson.loads(entry)))
            if read[-1][1]["event"] in TERMINAL_STREAM_EVENTS:
                yield read
                return
        yield read


async def _sse(request: Request, stream: str, after: str) -> AsyncIterator[bytes]:
    async for read in _entries(request, stream, after):
        if not read:
            yield b"event: ping\n\n"
            continue
        yield b"".join(b"id: " + entry_id.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
                       for entry_id, event in read)


async def _blocking(request: Request, stream: str, mode: str) -> Any:
    answer: list[str] = []
    async for read in _entries(request, stream, "0"):
        for _, event in read:
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
    raise EddyError()  # the stream ends only after its closing event


@router.post("/chat-messages")
async def chat_message(request: Request, body: api.ChatMessageRequest,
                       key: ApiKeyPrincipal = AppKey) -> Any:
    app = await app_of_key(request, key)
    if app["mode"] == "agent-chat":
        raise AppUnavailable("Agent apps are not supported yet: use a chat or completion app.")
    if app["mode"] != "chat":
        raise NotChatApp()
    return await _ask(request, key, app, body, body.conversation_id or None)


@router.post("/completion-messages")
async def completion_message(request: Request, body: api.CompletionMessageRequest,
                             key: ApiKeyPrincipal = AppKey) -> Any:
    app = await app_of_key(request, key)
    if app["mode"] != "completion":
        raise NotCompletionApp()
    return await _ask(request, key, app, body, None)


async def _stop(request: Request, key: ApiKeyPrincipal, task_id: str, user: str) -> dict[str, str]:
    """Any gateway process: the task's worker sees the request on its next chunk. A task of
    another user (or none) is silently not stopped, as Dify does."""
    c = get_container(request)
    parsed = maybe_uuid(task_id)
    if parsed is not None:
        assert key.app_id is not None
        await c.kv.set(task_stop_key(parsed),
                       task_owner(key.app_id, end_user_id_for(key.app_id, user)),
                       ttl=c.settings.TASK_STREAM_TTL_SECONDS)
    return {"result": "success"}


@router.post("/chat-messages/{task_id}/stop")
async def stop_chat(request: Request, task_id: str, body: api.StopRequest,
                    key: ApiKeyPrincipal = AppKey) -> dict[str, str]:
    if (await app_of_key(request, key))["mode"] != "chat":
        raise NotChatApp()
    return await _stop(request, key, task_id, body.user)


@router.post("/completion-messages/{task_id}/stop")
async def stop_completion(request: Request, task_id: str, body: api.StopRequest,
                          key: ApiKeyPrincipal = AppKey) -> dict[str, str]:
    if (await app_of_key(request, key))["mode"] != "completion":
        raise NotCompletionApp()
    return await _stop(request, key, task_id, body.user)


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
    after = last_event_id or "0"
    if not _is_stream_id(after):
        raise BadRequest("Last-Event-ID must be an event id of this stream.")
    return StreamingResponse(_sse(request, task_stream_key(parsed), after),  # type: ignore[arg-type]
                             media_type="text/event-stream", headers=SSE_HEADERS)


def _is_stream_id(value: str) -> bool:
    millis, _, sequence = value.partition("-")
    return millis.isdigit() and (sequence == "" or sequence.isdigit())
