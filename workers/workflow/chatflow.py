"""Advanced-chat (chatflow) apps: a message is answered by a run of the app's published
workflow instead of the chat processor (the conversation context routes its advanced-chat
MessageCreated to the workflow context; it never knows workflows exist).

The chatflow processor starts the message's run (one per message, `chat_run_id_for`) with
the conversation's `sys.*` variables and its conversation variables as the previous run
left them; the engine streams the run onto the message's task stream (workflow and node
events, `message` chunks from answer nodes) and, at the run's end, `finish_chat_message`
records how the message ended on its conversation (so history, memory, feedback and lists
work as for chat apps) and gives the closing `message_end` (or `error`) to stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

from adapters.bus.base import Message
from adapters.kv.base import KeyValueStore
from adapters.llm.openai_protocol import Usage
from commands.aggregate import Context
from commands.conversation.aggregates import Conversation, MessageState
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowVersion
from commands.workflow.runs import start_run, version_to_run
from config import Settings
from events.envelope import Envelope
from events.registry import EventTypes
from events.store import ConcurrencyConflict, EventStore
from schemas.base import EventPayload
from schemas.conversation import events as cev
from schemas.conversation.naming import task_owner, task_stop_key, task_stream_key
from schemas.errors import EddyError
from schemas.workflow import commands as cmd
from schemas.workflow import events as ev
from schemas.workflow.naming import chat_run_id_for
from workers.conversation.chat import dify_usage, stream_fields
from workers.conversation.task_stream import TaskStream
from workers.knowledge.indexing import caused_by
from workers.ownership import current_fence
from workers.runtime import Processor, by_type, decoding

log = logging.getLogger(__name__)
MAX_RECORD_CONFLICTS = 20
ADVANCED_CHAT = "advanced-chat"


def is_chatflow_message(payload: object) -> bool:
    """The MessageCreated events a workflow run answers (the chat processor skips them)."""
    return isinstance(payload, cev.MessageCreated) and payload.mode == ADVANCED_CHAT


@dataclass(frozen=True)
class ChatflowDeps:
    store: EventStore
    kv: KeyValueStore
    stream_ttl: int


def chatflow_processor(topic: str, *, event_types: EventTypes, store: EventStore,
                       kv: KeyValueStore, settings: Settings) -> Processor:
    deps = ChatflowDeps(store=store, kv=kv, stream_ttl=settings.TASK_STREAM_TTL_SECONDS)

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        await fail_chat_message(deps, event_types.envelope_from_json(message.value),
                                "internal_server_error", 500,
                                "The message could not be answered.")

    return Processor(group=topic, topics=[topic], on_dead_letter=on_dead_letter,
                     handle=decoding(event_types, by_type({
                         cev.MessageCreated: partial(start_chat_run, deps)})))


async def start_chat_run(deps: ChatflowDeps, event: Envelope[cev.MessageCreated]) -> None:
    """Record the message's run started (nothing more when it was, or the message ended).
    An app with no published workflow fails the message with Dify's app_unavailable."""
    ctx = caused_by(event)
    for _ in range(MAX_RECORD_CONFLICTS):
        uow = UnitOfWork(deps.store, ctx)
        try:
            started = await asyncio.to_thread(_decide_start, deps.store, uow, event)
        except EddyError as error:
            await fail_chat_message(deps, event, error.code, error.status, error.message)
            return
        if not started:
            return
        try:
            await asyncio.to_thread(uow.commit)
            return
        except ConcurrencyConflict:
            continue  # the conversation's run started by a redelivery meanwhile: decide again
    raise ConcurrencyConflict(f"message {event.payload.message_id} kept conflicting")


def _decide_start(store: EventStore, uow: UnitOfWork,
                  event: Envelope[cev.MessageCreated]) -> bool:
    p = event.payload
    conversation = uow.get(Conversation, event.aggregate_id)
    if not conversation.awaits_answer(p.message_id):
        return False
    command = cmd.StartWorkflowRun(
        run_id=chat_run_id_for(p.message_id), app_id=p.app_id, task_id=p.task_id,
        mode=ADVANCED_CHAT, triggered_from="app-run", user=conversation.user,
        inputs=p.inputs, files=p.files)
    version = version_to_run(uow, command)
    turns = list(conversation.messages)
    earlier = turns[:turns.index(p.message_id)]
    start_run(uow, command, version,
              system={"query": p.query, "conversation_id": str(event.aggregate_id),
                      "dialogue_count": len(earlier) + 1},
              conversation_id=event.aggregate_id, message_id=p.message_id,
              conversation_variables=conversation_variables_for(store.load, version, earlier))
    return True


def conversation_variables_for(load: Callable[[UUID], list[Envelope[EventPayload]]],
                               version: WorkflowVersion,
                               earlier_messages: list[UUID]) -> dict[str, Any]:
    """The conversation variables a new turn starts with: as the latest earlier run left
    them (a message whose run never started is passed over), over the defaults of the
    version's definitions (a variable the version added since starts at its default)."""
    assert version.spec is not None
    values = {v["name"]: v.get("value") for v in version.spec.conversation_variables}
    for message_id in reversed(earlier_messages):
        left = ev.conversation_variables_left(
            [e.payload for e in load(chat_run_id_for(message_id))])
        if left is not None:
            return {**values, **{k: v for k, v in left.items() if k in values}}
    return values


async def fail_chat_message(deps: ChatflowDeps, event: Envelope[cev.MessageCreated],
                            code: str, status: int, message: str) -> None:
    """The message will not be answered (no run could start): recorded on its conversation
    and its user hears why. No run writes this message's stream, so this may."""
    p = event.payload
    log.warning("chatflow message failed", extra={"message_id": str(p.message_id),
                                                  "code": code, "error": message[:300]})
    failed = cev.MessageFailed(message_id=p.message_id, code=code, status=status,
                               error=message)
    ended = await asyncio.to_thread(record_message_end, deps.store, event.aggregate_id, failed,
                                    caused_by(event))
    if ended is None or ended.status != "failed":
        return  # it ended otherwise before (stopped by its user): that end stands
    stream = TaskStream(deps.kv, task_stream_key(p.task_id), task_stop_key(p.task_id),
                        task_owner(p.app_id, p.end_user_id), deps.stream_ttl, current_fence())
    await stream.claim()
    if not await stream.closed():  # a redelivery after the error was streamed: once
        await stream.publish({"event": "error", **stream_fields(event), **ended.error})


def record_message_end(store: EventStore, conversation_id: UUID,
                       payload: cev.MessageAnswered | cev.MessageStopped | cev.MessageFailed,
                       ctx: Context) -> MessageState | None:
    """Record how the message ended on its conversation (others write it meanwhile:
    feedback, renames, next questions), unless it had ended already (a redelivery, or a stop
    racing the answer: the first end stands); how it ended. None: the conversation holds no
    such message (a run recorded without one: nothing to answer)."""
    for _ in range(MAX_RECORD_CONFLICTS):
        uow = UnitOfWork(store, ctx)
        conversation = uow.get(Conversation, conversation_id)
        if payload.message_id not in conversation.messages:
            return None
        if conversation.finish(payload, ctx):
            try:
                uow.commit()
            except ConcurrencyConflict:
                continue
        return conversation.messages[payload.message_id]
    raise ConcurrencyConflict(f"conversation {conversation_id} kept changing")


def finish_chat_message(store: EventStore, started: Envelope[ev.WorkflowRunStarted],
                        ended: ev.WorkflowRunSucceeded | ev.WorkflowRunFailed
                        | ev.WorkflowRunStopped, ctx: Context,
                        usage: Usage | None = None) -> dict[str, Any] | None:
    """For the engine, at the end of an advanced-chat run: record how its message ended on
    the conversation (answered with the answer nodes' text, stopped, or failed) and give
    the closing event to stream right after `workflow_finished`, in the same write (so a
    takeover streams both or neither): `message_end`, or `error`. The same event again
    for a redelivered end; None when the conversation holds no such message. `usage`: the
    run's LLM usage summed, when the engine has it (else its total tokens)."""
    p = started.payload
    assert p.conversation_id is not None and p.message_id is not None
    dify = dify_usage(usage or Usage(total_tokens=ended.total_tokens), ended.elapsed_time)
    end: cev.MessageAnswered | cev.MessageStopped | cev.MessageFailed
    if isinstance(ended, ev.WorkflowRunSucceeded):
        end = cev.MessageAnswered(message_id=p.message_id, answer=ended.answer, usage=dify)
    elif isinstance(ended, ev.WorkflowRunStopped):
        end = cev.MessageStopped(message_id=p.message_id, answer="", usage=dify)
    else:
        end = cev.MessageFailed(message_id=p.message_id, code="completion_request_error",
                                status=400, error=ended.error)
    message = record_message_end(store, p.conversation_id, end, ctx)
    if message is None:
        return None
    fields = {"task_id": str(p.task_id), "id": str(p.message_id),
              "message_id": str(p.message_id), "conversation_id": str(p.conversation_id),
              "created_at": int(started.occurred_at.timestamp())}
    if message.status == "failed":
        return {"event": "error", **fields, **message.error}
    return {"event": "message_end", **fields, "files": [], "metadata": {
        "usage": message.usage, "retriever_resources": message.retriever_resources}}
