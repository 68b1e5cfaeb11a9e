"""The chat processor: answers a MessageCreated (what Dify did in the request thread).

It streams the model's tokens onto the task's Redis stream (never the event store) and
records how the message ended as one event on its conversation: MessageAnswered (with
usage and the knowledge it was given), MessageStopped (its user stopped it) or
MessageFailed; then it closes the stream with `message_end` or `error`.

At-least-once: a redelivered message that already ended only makes sure its stream is
closed. One whose worker died mid-answer is answered again from the start, after a
`message_replace` that empties what the dead attempt streamed; the stored answer is the
new attempt's alone. An attempt whose worker stalled past its lease (the message moved to
another member) stops at its next effect: each attempt claims the task stream with its
message's fence, a stream takes writes only from its latest claimant, and the answer is
committed only while the message is still this member's (workers/ownership.py). A message
that keeps failing is parked and recorded as failed by the dead-letter hook, so none stays
pending.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID, uuid5

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.embeddings.base import EmbeddingError
from adapters.kv.base import KeyValueStore
from adapters.llm.clients import ModelClients
from adapters.llm.openai_protocol import (
    OpenAIProtocolClient,
    ProviderError,
    Usage,
    image_part,
    text_part,
)
from adapters.storage.base import Storage
from commands.conversation.aggregates import Conversation
from commands.knowledge.aggregates import RetrievalHits
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from events.store import ConcurrencyConflict, EventStore
from indexing.tokens import count_tokens_approx
from projections.knowledge import queries as knowledge
from projections.knowledge.retrieval import RetrievalSettings, Retriever
from schemas.conversation import events as ev
from schemas.conversation.config import AppModelConfig
from schemas.conversation.naming import (
    task_owner,
    task_stop_key,
    task_stream_key,
)
from schemas.errors import EddyError
from schemas.knowledge.events import SegmentHits
from workers.conversation.annotations import AnnotationDeps, find_reply
from workers.conversation.task_stream import StopWatch, TaskStream, TokenWriter
from workers.knowledge.indexing import caused_by
from workers.ownership import current_fence, still_owner

log = logging.getLogger(__name__)
DEFAULT_CONTEXT_SIZE = 4096
DEFAULT_MAX_TOKENS = 512
MAX_RECORD_CONFLICTS = 20
STOP_CHECK_SECONDS = 0.2  # a stop request reaches a streaming answer within this
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
CONTEXT_PROMPT = ("Use the following context as your learned knowledge, inside <context>"
                  "</context> XML tags.\n<context>\n{context}\n</context>\nWhen answering, "
                  "do not mention that you were given this context.")


class ChatModel(Protocol):
    """A workspace's model ready to call (the platform's resolved model)."""

    @property
    def model(self) -> str: ...

    @property
    def context_size(self) -> int | None: ...

    @property
    def max_tokens(self) -> int | None: ...

    @property
    def endpoint_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    def client(self) -> OpenAIProtocolClient: ...


# (tenant, provider, model) -> the model; raises a typed error (provider_not_initialize)
ResolveModel = Callable[[UUID, str | None, str | None], Awaitable[ChatModel]]


@dataclass
class ChatDeps:
    store: EventStore
    kv: KeyValueStore
    engine: AsyncEngine
    storage: Storage
    retriever: Retriever
    resolve: ResolveModel
    stream_ttl: int
    annotations: AnnotationDeps
    # the process's answers' stop requests, all read in one round trip per check
    stops: StopWatch
    clients: ModelClients = field(default_factory=ModelClients)


def task_stream(deps: ChatDeps, p: ev.MessageCreated) -> TaskStream:
    return TaskStream(deps.kv, task_stream_key(p.task_id), task_stop_key(p.task_id),
                      task_owner(p.app_id, p.end_user_id), deps.stream_ttl, current_fence())


def stream_fields(event: Envelope[ev.MessageCreated]) -> dict[str, Any]:
    """What every SSE event of the message carries (chat apps name the conversation)."""
    p = event.payload
    fields: dict[str, Any] = {"task_id": str(p.task_id), "id": str(p.message_id),
                              "message_id": str(p.message_id)}
    if p.mode != "completion":
        fields["conversation_id"] = str(event.aggregate_id)
    fields["created_at"] = int(event.occurred_at.timestamp())
    return fields


def dify_usage(usage: Usage, latency: float) -> dict[str, Any]:
    """Dify's Usage. Eddy knows no prices: they are zero, in Dify's decimal strings."""
    return {
        "prompt_tokens": usage.prompt_tokens, "prompt_unit_price": "0",
        "prompt_price_unit": "0.000001", "prompt_price": "0",
        "completion_tokens": usage.completion_tokens, "completion_unit_price": "0",
        "completion_price_unit": "0.000001", "completion_price": "0",
        "total_tokens": usage.total_tokens, "total_price": "0", "currency": "USD",
        "latency": round(latency, 6),
    }


class MessageAnswer:
    """One attempt at answering one message."""

    def __init__(self, deps: ChatDeps, event: Envelope[ev.MessageCreated]) -> None:
        self.d = deps
        self.event = event
        self.p = event.payload
        self.ctx = caused_by(event)
        self.stream = task_stream(deps, self.p)
        self.fields = stream_fields(event)
        self.started = time.monotonic()
        # The conversation as loaded before answering, with its unit of work: the end is
        # first tried on it (the store refuses it if anything was written since, and then
        # the end is recorded on the conversation as it is now): one load fewer per message.
        self._loaded: UnitOfWork | None = None
        # dataset -> (document, segment) -> hits: what retrieval returned for the prompt
        self._segment_hits: dict[UUID, Counter[tuple[UUID, UUID]]] = {}

    async def run(self) -> None:
        # Independent reads at once: each is a round trip the first token waits for. The
        # claim fences off an earlier attempt still running (its worker stalled).
        conversation, stop_requested, streamed = await asyncio.gather(
            self._conversation(), self.stream.stop_requested(), self.stream.claim())
        if not conversation.awaits_answer(self.p.message_id):
            await self._close_ended(conversation)
            return
        if stop_requested:
            await self._end(ev.MessageStopped(message_id=self.p.message_id, answer="",
                                              usage=dify_usage(Usage(), 0.0)), [])
            return
        if streamed:
            # An earlier attempt died mid-answer: its tokens are void.
            await self.stream.publish({"event": "message_replace", **self.fields, "answer": "",
                                       "reason": "answer restarted"})
        try:
            await self._answer(conversation)
        except EddyError as error:  # e.g. provider_not_initialize
            await self.fail(error.code, error.status, error.message)
        except ProviderError as error:
            await self.fail("completion_request_error", 400, error.message)
        except EmbeddingError as error:  # the question could not be searched for
            await self.fail("completion_request_error", 400,
                            f"Knowledge retrieval failed: {error}")

    async def _conversation(self) -> Conversation:
        uow = UnitOfWork(self.d.store, self.ctx)
        conversation = await asyncio.to_thread(uow.get, Conversation, self.event.aggregate_id)
        self._loaded = uow
        return conversation

    async def _answer(self, conversation: Conversation) -> None:
        config = AppModelConfig.model_validate(self.p.config)
        blocked = _blocked_input(config, self.p.query, self.p.inputs)
        if blocked is not None:
            await self.stream.publish({"event": "message", **self.fields, "answer": blocked})
            await self._end(ev.MessageAnswered(
                message_id=self.p.message_id, answer=blocked,
                usage=dify_usage(Usage(), time.monotonic() - self.started)), [])
            return
        if self.p.mode != "completion" and await self._annotation_reply():
            return
        model = await self.d.resolve(self.event.tenant_id,  # type: ignore[arg-type]
                                     config.model.provider if config.model else None,
                                     config.model.name if config.model else None)
        resources, context = await self._retrieve(config)
        params = dict(config.model.completion_params) if config.model else {}
        messages = self._prompt(config, conversation, context, model, params,
                                await self._images())
        parts: list[str] = []
        usage: Usage | None = None
        stopped = False
        tokens = TokenWriter(self.stream)
        await still_owner()  # the model costs money: not for a message moved elsewhere
        asked_to_stop = self.d.stops.watch(self.stream)
        try:
            async for chunk in self.d.clients.client_for(model).stream_chat(model.model, messages,
                                                                    **params):
                if chunk.content:
                    parts.append(chunk.content)
                    tokens.add({"event": "message", **self.fields, "answer": chunk.content})
                usage = chunk.usage or usage
                if asked_to_stop.done():
                    stopped = True
                    break
        finally:  # every token streamed is on the stream before what ends it
            self.d.stops.unwatch(asked_to_stop)
            await tokens.drain()
        answer = "".join(parts)
        replaced = _blocked_output(config, answer)
        if replaced is not None:
            answer = replaced
            await self.stream.publish({"event": "message_replace", **self.fields,
                                       "answer": answer, "reason": "output moderation"})
        prompt_tokens = sum(count_tokens_approx(_text_of(m["content"])) for m in messages)
        if usage is None:  # the provider sent none (or we stopped first): estimated
            completion = count_tokens_approx(answer)
            usage = Usage(prompt_tokens, completion, prompt_tokens + completion)
        latency = time.monotonic() - self.started
        if stopped:
            await self._end(ev.MessageStopped(message_id=self.p.message_id, answer=answer,
                                              usage=dify_usage(usage, latency)), [])
        else:
            await self._end(ev.MessageAnswered(
                message_id=self.p.message_id, answer=answer, usage=dify_usage(usage, latency),
                retriever_resources=resources), resources)

    async def _annotation_reply(self) -> bool:
        """Answer with a matching annotation (no model call), as Dify's chat apps do."""
        found = await find_reply(self.d.annotations, self.event)
        if found is None:
            return False
        hit, answer = found
        await self.stream.publish({"event": "message", **self.fields, "answer": answer})
        await self._end(ev.MessageAnswered(
            message_id=self.p.message_id, answer=answer,
            usage=dify_usage(Usage(), time.monotonic() - self.started)), [], hit)
        return True

    async def _images(self) -> list[dict[str, Any]]:
        return await image_parts(self.d.storage, self.p.files)

    def _prompt(self, config: AppModelConfig, conversation: Conversation, context: str,
                model: ChatModel, params: dict[str, Any],
                images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Dify's simple prompt: the pre-prompt with the inputs filled in and the retrieved
        context as the system message, as many earlier turns as the context size leaves
        room for (newest kept), then the question."""
        system = _VARIABLE.sub(lambda m: str(self.p.inputs.get(m.group(1), "")),
                               config.pre_prompt)
        if context:
            system = "\n\n".join(s for s in (system, CONTEXT_PROMPT.format(context=context)) if s)
        query = self.p.query
        if self.p.mode == "completion":
            # A completion app's prompt is its pre-prompt; the query (if any) follows it.
            query, system = "\n\n".join(s for s in (system, query) if s) or " ", ""
        head = [{"role": "system", "content": system}] if system else []
        tail = [{"role": "user", "content": query}]
        if images:
            tail[0]["content"] = [text_part(query), *images]
        max_tokens = int(params.get("max_tokens") or model.max_tokens or DEFAULT_MAX_TOKENS)
        budget = (model.context_size or DEFAULT_CONTEXT_SIZE) - max_tokens \
            - count_tokens_approx(system) - count_tokens_approx(query)
        history: list[dict[str, Any]] = []
        for question, answer in reversed(conversation.history(before=self.p.message_id)):
            cost = count_tokens_approx(question) + count_tokens_approx(answer)
            if cost > budget:
                break
            budget -= cost
            history[:0] = [{"role": "user", "content": question},
                           {"role": "assistant", "content": answer}]
        return head + history + tail

    async def _retrieve(self, config: AppModelConfig) -> tuple[list[dict[str, Any]], str]:
        """The app's datasets searched with the question: Dify's retriever_resources (when
        the app shows them) and the context text for the prompt."""
        settings = config.dataset_configs
        query = self.p.inputs.get(config.dataset_query_variable) \
            if config.dataset_query_variable else self.p.query
        if not settings.dataset_ids() or not query:
            return [], ""
        found = []
        for dataset_id in settings.dataset_ids():
            dataset = await knowledge.dataset(self.d.engine, self.event.tenant_id,  # type: ignore[arg-type]
                                              UUID(dataset_id))
            if dataset is None:
                continue  # deleted since the app was configured
            retrieval = RetrievalSettings.from_dify(
                {"top_k": settings.top_k, "score_threshold": settings.score_threshold,
                 "score_threshold_enabled": settings.score_threshold_enabled},
                dataset["retrieval_model"] or {}, dataset["indexing_technique"] == "economy")
            for hit in await self.d.retriever.retrieve(dataset, str(query), retrieval):
                found.append((dataset, hit))
        found.sort(key=lambda f: -f[1].score)
        found = found[:settings.top_k]
        for dataset, hit in found:
            self._segment_hits.setdefault(dataset["id"], Counter())[
                (hit.row["document_id"], hit.row["id"])] += 1
        context = "\n\n".join(hit.row["content"] for _, hit in found)
        if not config.retriever_resource.enabled:
            return [], context
        return [{
            "position": position, "dataset_id": str(dataset["id"]),
            "dataset_name": dataset["name"], "document_id": str(hit.row["document_id"]),
            "document_name": hit.row["document_name"],
            "data_source_type": hit.row["document_data_source_type"],
            "segment_id": str(hit.row["id"]), "retriever_from": "api", "score": hit.score,
            "hit_count": hit.row["hit_count"], "word_count": hit.row["word_count"],
            "segment_position": hit.row["position"],
            "index_node_hash": hit.row["index_node_hash"], "content": hit.row["content"],
            "summary": None, "created_at": int(hit.row["created_at"].timestamp()),
        } for position, (dataset, hit) in enumerate(found, start=1)], context

    # --- ending ------------------------------------------------------------------------------

    async def _record(self, payload: ev.MessageAnswered | ev.MessageStopped
                      | ev.MessageFailed, hit: ev.AnnotationHit | None = None) -> bool:
        """Record the end on the conversation (others may write it meanwhile: feedback,
        renames, next questions); False when the message had ended already."""
        for _ in range(MAX_RECORD_CONFLICTS):
            uow, self._loaded = self._loaded or UnitOfWork(self.d.store, self.ctx), None
            conversation = await asyncio.to_thread(uow.get, Conversation,
                                                   self.event.aggregate_id)
            if not conversation.finish(payload, self.ctx, hit):
                return False
            if isinstance(payload, ev.MessageAnswered):
                self._count_segment_hits(uow)
            await still_owner()
            try:
                await asyncio.to_thread(uow.commit)
                return True
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"conversation {self.event.aggregate_id} kept changing")

    def _count_segment_hits(self, uow: UnitOfWork) -> None:
        """The segments the answer was given, counted as hits in the answer's own commit
        (as a retrieval's are, one batch per dataset): a redelivered message, already
        answered, counts nothing again."""
        for dataset_id, counter in self._segment_hits.items():
            batch = uow.new(RetrievalHits, uuid5(self.p.message_id, f"segment-hits:{dataset_id}"))
            batch.record_hits(dataset_id, [
                SegmentHits(document_id=d, segment_id=s, count=n)
                for (d, s), n in sorted(counter.items())], uow.ctx)

    async def _end(self, payload: ev.MessageAnswered | ev.MessageStopped,
                   resources: list[dict[str, Any]], hit: ev.AnnotationHit | None = None) -> None:
        if await self._record(payload, hit):
            metadata: dict[str, Any] = {"usage": payload.usage, "retriever_resources": resources}
            if hit is not None:
                metadata["annotation_reply"] = {"id": str(hit.annotation_id)}
            await self.stream.publish({"event": "message_end", **self.fields,
                                       "metadata": metadata})
        else:
            await self._close_ended(await self._conversation())

    async def fail(self, code: str, status: int, message: str) -> None:
        log.warning("message failed", extra={"message_id": str(self.p.message_id),
                                             "code": code, "error": message[:300]})
        if await self._record(ev.MessageFailed(message_id=self.p.message_id, code=code,
                                               status=status, error=message)):
            await self.stream.publish({"event": "error", **self.fields, "status": status,
                                       "code": code, "message": message})
        else:
            await self._close_ended(await self._conversation())

    async def _close_ended(self, conversation: Conversation) -> None:
        """The message ended before (a redelivery): write its closing event if the attempt
        that ended it died before doing so."""
        ended = conversation.messages.get(self.p.message_id)
        if ended is None or await self.stream.closed():
            return  # None: retention expired it since (a late delivery, a replay)
        if ended.status == "failed":
            await self.stream.publish({"event": "error", **self.fields, **ended.error})
        else:
            await self.stream.publish({"event": "message_end", **self.fields, "metadata": {
                "usage": ended.usage, "retriever_resources": ended.retriever_resources}})


async def image_parts(storage: Storage, files: Sequence[Mapping[str, Any]],
                      detail: str | None = None) -> list[dict[str, Any]]:
    """Image files as the model's vision content: a stored file inline (a data URL: the
    model never reaches Eddy's storage), a remote one by its URL. `detail` overrides each
    file's own."""
    parts = []
    for f in files:
        wanted = detail or f.get("detail") or "auto"
        if f["transfer_method"] == "remote_url":
            parts.append(image_part(f["url"], wanted))
        else:
            data = await storage.load(f["key"])
            url = f"data:{f['mime_type']};base64,{base64.b64encode(data).decode()}"
            parts.append(image_part(url, wanted))
    return parts


def _text_of(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p["text"] for p in content if p.get("type") == "text")


def _blocked_input(config: AppModelConfig, query: str, inputs: dict[str, Any]) -> str | None:
    """Dify's keyword moderation of the question: the preset answer, no model call."""
    avoid = config.sensitive_word_avoidance
    if not (avoid.enabled and avoid.config.inputs_config.enabled):
        return None
    text = " ".join([query, *map(str, inputs.values())]).lower()
    if any(k.lower() in text for k in avoid.keywords()):
        return avoid.config.inputs_config.preset_response
    return None


def _blocked_output(config: AppModelConfig, answer: str) -> str | None:
    avoid = config.sensitive_word_avoidance
    if not (avoid.enabled and avoid.config.outputs_config.enabled):
        return None
    if any(k.lower() in answer.lower() for k in avoid.keywords()):
        return avoid.config.outputs_config.preset_response
    return None


async def answer_message(deps: ChatDeps, event: Envelope[ev.MessageCreated]) -> None:
    await MessageAnswer(deps, event).run()


async def fail_message(deps: ChatDeps, event: Envelope[ev.MessageCreated],
                       exc: BaseException) -> None:
    """Dead-letter hook: the message will not be answered; its user hears why."""
    answer = MessageAnswer(deps, event)
    await answer.stream.claim()
    await answer.fail("internal_server_error", 500, "The message could not be answered.")
