"""What the model-calling nodes (llm, question-classifier, parameter-extractor, the router of
knowledge-retrieval's single mode) share: the node's model resolved with the workspace's
credentials, the conversation's earlier turns (memory, advanced-chat), one call to the model
(streamed, usage in Dify's shape) and JSON read out of an answer."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.llm.clients import ModelClients
from adapters.llm.openai_protocol import (
    Message,
    ProviderError,
    StreamAccumulator,
    ToolCall,
    Usage,
    text_part,
)
from adapters.sandbox.base import CodeSandbox
from commands.conversation.aggregates import Conversation
from events.store import EventStore
from indexing.tokens import count_tokens_approx
from projections.knowledge.retrieval import Retriever
from projections.platform.models import ResolvedModel, ResolveModel
from schemas.errors import ProviderNotInitialized
from workers.conversation.chat import (
    DEFAULT_CONTEXT_SIZE,
    DEFAULT_MAX_TOKENS,
    dify_usage,
    image_parts,
)
from workers.ownership import still_owner
from workers.workflow.nodes.base import NodeCall, NodeError, NodeServices
from workflow_graph.variables import MISSING


class ModelServices(NodeServices, Protocol):
    """The engine's services members these nodes use (workers/workflow/services.py)."""

    @property
    def store(self) -> EventStore: ...  # the conversation's history (memory)

    @property
    def resolve_model(self) -> ResolveModel: ...  # model_resolver(..., "llm")

    @property
    def llm_clients(self) -> ModelClients: ...  # one client per endpoint and key

    @property
    def retriever(self) -> Retriever: ...

    @property
    def sandbox(self) -> CodeSandbox: ...  # jinja2 prompts


def services(call: NodeCall) -> ModelServices:
    return call.services  # type: ignore[no-any-return]


@dataclass(frozen=True)
class NodeModel:
    """The node's `model`: which model, its mode and its parameters, resolved."""
    resolved: ResolvedModel
    mode: str  # "chat" | "completion"
    params: dict[str, Any]

    @property
    def features(self) -> tuple[str, ...]:
        return self.resolved.features


async def node_model(call: NodeCall, config: Mapping[str, Any] | None) -> NodeModel:
    """The model the node names, with the workspace's credentials; none: the node fails
    with Dify's provider_not_initialize message."""
    config = config or {}
    try:
        resolved = await services(call).resolve_model(
            call.run.tenant_id, config.get("provider") or None, config.get("name") or None)
    except ProviderNotInitialized as exc:
        raise NodeError(exc.message, "ProviderNotInitializeError") from exc
    mode = str(config.get("mode") or resolved.mode or "chat")
    return NodeModel(resolved, mode, dict(config.get("completion_params") or {}))


@dataclass(frozen=True)
class Answer:
    text: str
    usage: dict[str, Any]  # Dify's LLMUsage
    finish_reason: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)


async def ask(call: NodeCall, model: NodeModel, messages: Sequence[Message], *,
              stream: bool = False, tools: Sequence[dict[str, Any]] | None = None,
              **extra: Any) -> Answer:
    """One chat call. With `stream`, each token goes to the run's stream as Dify's
    text_chunk of this node's `text`. A completion-mode model gets its one prompt as the
    user's message (the protocol's completions endpoint is legacy)."""
    started = time.monotonic()
    client = services(call).llm_clients.client_for(model.resolved)
    folded = StreamAccumulator(model.resolved.model)
    await still_owner()  # the model costs money: not for a run moved to another member
    try:
        async for chunk in client.stream_chat(model.resolved.model, messages, tools=tools,
                                              **{**protocol_params(model.params), **extra}):
            folded.add(chunk)
            if stream and chunk.content:
                await call.emit("text_chunk", {"text": chunk.content,
                                               "from_variable_selector": [call.node.id, "text"]})
    except ProviderError as exc:
        raise NodeError(exc.message or str(exc), type(exc).__name__) from exc
    answer = folded.result()
    usage = answer.usage
    if usage is None:  # the provider counted nothing: estimated, as the chat app does
        prompt = sum(count_tokens_approx(message_text(m)) for m in messages)
        completion = count_tokens_approx(answer.content)
        usage = Usage(prompt, completion, prompt + completion)
    return Answer(answer.content, dify_usage(usage, time.monotonic() - started),
                  answer.finish_reason, answer.tool_calls)


def total_usage(*usages: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The usage of several calls of one node as one (Dify's shape); None for no call."""
    called = [u for u in usages if u]
    if not called:
        return None
    tokens = {k: sum(int(u[k]) for u in called)
              for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    latency = sum(float(u["latency"]) for u in called)
    return dify_usage(Usage(**tokens), latency)


def protocol_params(completion_params: Mapping[str, Any]) -> dict[str, Any]:
    """Dify's completion_params as the protocol takes them: `response_format` is a name
    there ("json_object", or "json_schema" with the schema's JSON text in `json_schema`)."""
    params = {k: v for k, v in completion_params.items()
              if v is not None and k != "json_schema" and (k != "stop" or v)}
    named = params.get("response_format")
    if named == "json_schema" and completion_params.get("json_schema"):
        schema = completion_params["json_schema"]
        try:
            schema = json.loads(schema) if isinstance(schema, str) else schema
        except ValueError as exc:
            raise NodeError(f"completion_params.json_schema is not valid JSON: {exc}",
                            "LLMNodeError") from exc
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(named, str):
        params["response_format"] = {"type": named}
    return params


def message_text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


# -- memory -----------------------------------------------------------------------------------

async def memory_turns(call: NodeCall, memory: Mapping[str, Any] | None,
                       model: NodeModel, budget_used: int) -> list[tuple[str, str]]:
    """The conversation's earlier turns (question, answer), oldest first: the newest
    `window.size` of them when the window is on, and no more than the model's context
    leaves room for. None outside a conversation (workflow apps) or without memory."""
    if not memory or call.run.conversation_id is None:
        return []
    store = services(call).store
    conversation_id = call.run.conversation_id
    conversation = await asyncio.to_thread(
        lambda: Conversation.replay(conversation_id, store.load(conversation_id)))
    # the run's own message is the question being answered, not memory
    turns = conversation.history(before=call.run.message_id or conversation_id)
    window = memory.get("window") or {}
    if window.get("enabled"):
        size = int(window.get("size") or 0)
        turns = turns[-size:] if size > 0 else []
    max_tokens = int(model.params.get("max_tokens") or model.resolved.max_tokens
                     or DEFAULT_MAX_TOKENS)
    budget = (model.resolved.context_size or DEFAULT_CONTEXT_SIZE) - max_tokens - budget_used
    kept: list[tuple[str, str]] = []
    for question, answer in reversed(turns):
        budget -= count_tokens_approx(question) + count_tokens_approx(answer)
        if budget < 0:
            break
        kept.insert(0, (question, answer))
    return kept


def memory_messages(turns: Sequence[tuple[str, str]]) -> list[Message]:
    return [m for question, answer in turns for m in (
        {"role": "user", "content": question}, {"role": "assistant", "content": answer})]


def memory_text(turns: Sequence[tuple[str, str]], memory: Mapping[str, Any] | None) -> str:
    """The turns as one text (completion prompts, classifier histories), with the memory's
    role prefixes (Dify's defaults: Human / Assistant)."""
    prefixes = (memory or {}).get("role_prefix") or {}
    user = prefixes.get("user") or "Human"
    assistant = prefixes.get("assistant") or "Assistant"
    return "\n".join(f"{user}: {q}\n{assistant}: {a}" for q, a in turns)


# -- vision ----------------------------------------------------------------------------------

async def attach_images(call: NodeCall, messages: list[Message],
                         configs: Mapping[str, Any]) -> None:
    """The selector's image files as vision parts: of the prompt's last message when it is
    the user's, else of a user message of their own."""
    value = selected(call, configs.get("variable_selector") or ["sys", "files"])
    files: Sequence[Any] = value if isinstance(value, list) else [value] if value else []
    images = [f for f in files if isinstance(f, Mapping) and is_image(f)]
    if not images:
        return
    parts = await image_parts(services(call).storage, images, configs.get("detail") or "high")
    if messages and messages[-1]["role"] == "user":  # as Dify: the files first
        messages[-1]["content"] = [*parts, text_part(message_text(messages[-1]))]
    else:
        messages.append({"role": "user", "content": parts})


def is_image(file: Mapping[str, Any]) -> bool:
    return file.get("type") == "image" or str(file.get("mime_type") or "").startswith("image/")


# -- reading values ---------------------------------------------------------------------------

def selected(call: NodeCall, selector: Sequence[str] | None) -> Any:
    """The pool's value at a node's selector; None when it names nothing."""
    if not selector:
        return None
    value = call.pool.get(selector)
    return None if value is MISSING else value


_FENCED = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def json_in(text: str) -> Any:
    """The JSON value an answer holds: all of it, a fenced block, or its outermost object
    (models wrap JSON in prose and markdown); None when there is none."""
    candidates = [text.strip(), *(m.strip() for m in _FENCED.findall(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None
