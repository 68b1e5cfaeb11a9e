"""The `llm` node, as Dify's: the prompt template (chat: role messages; completion: one
text) with `{{#node.var#}}` references or Jinja2 (`edition_type: jinja2`, rendered in the
code sandbox, fed `prompt_config.jinja2_variables`), the context variable as `{{#context#}}`, the
conversation's earlier turns (memory) followed by the user's query, images from the vision
selector, and structured output (the model's JSON-schema mode when it has one, else asked
for in the prompt). Tokens stream as the node's `text_chunk`s."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.llm.openai_protocol import Message
from adapters.sandbox.base import SandboxError
from indexing.tokens import count_tokens_approx
from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workers.workflow.nodes.code import sandbox_limits
from workers.workflow.nodes.model_calls import (
    NodeModel,
    ask,
    attach_images,
    json_in,
    memory_messages,
    memory_text,
    memory_turns,
    message_text,
    node_model,
    selected,
    services,
)
from workflow_graph.variables import to_text

CONTEXT_MARK = "{{#context#}}"
HISTORIES_MARK = "#histories#"  # where a completion prompt takes the memory
SYS_QUERY_MARK = "#sys.query#"  # and the query
THINKING = re.compile(r"<think[^>]*>(.*?)</think>\s*", re.IGNORECASE | re.DOTALL)
STRUCTURED_OUTPUT_PROMPT = (
    "Answer only with one JSON object that is valid against the JSON schema below: no "
    "prose, no markdown fences, nothing before or after it.\nSchema:\n{schema}")


async def run(call: NodeCall) -> NodeResult:
    data = call.node.data
    model = await node_model(call, data.get("model"))
    context = _context(call, data.get("context") or {})
    schema = _schema(data)
    messages = await _prompt(call, model, context)
    extra: dict[str, Any] = {}
    if schema is not None:
        if "structured-output" in model.features:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "structured_output", "schema": schema}}
        else:
            messages.insert(0, {"role": "system", "content": STRUCTURED_OUTPUT_PROMPT.format(
                schema=json.dumps(schema, ensure_ascii=False))})
    answer = await ask(call, model, messages, stream=True, **extra)
    text, reasoning = answer.text, ""
    if data.get("reasoning_format") == "separated":  # Dify's: <think> apart from the text
        reasoning = "\n".join(m.strip() for m in THINKING.findall(text))
        text = THINKING.sub("", text)
    outputs: dict[str, Any] = {"text": text, "reasoning_content": reasoning,
                               "usage": answer.usage, "finish_reason": answer.finish_reason}
    if schema is not None:
        parsed = json_in(answer.text)
        if not isinstance(parsed, dict):
            raise NodeError(f"Failed to parse structured output: {answer.text[:200]}",
                            "LLMNodeError")
        outputs["structured_output"] = parsed
    inputs: dict[str, Any] = {"#context#": context} if context else {}
    return NodeResult(
        outputs=outputs, inputs=inputs, usage=answer.usage,
        process_data={"model_mode": model.mode, "model_provider": model.resolved.provider,
                      "model_name": model.resolved.model, "usage": answer.usage,
                      "finish_reason": answer.finish_reason,
                      "prompts": [{"role": m["role"], "text": message_text(m)}
                                  for m in messages]})


def _context(call: NodeCall, config: Mapping[str, Any]) -> str:
    """The context variable as text: a string as it is, knowledge-retrieval results (or
    any list) one item per line, each result by its `content`."""
    if not config.get("enabled"):
        return ""
    value = selected(call, config.get("variable_selector"))
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return to_text(value)
    lines = []
    for item in value:
        if isinstance(item, Mapping):
            if "content" not in item:
                raise NodeError(f"Invalid context structure: {item}",
                                "InvalidContextStructureError")
            lines.append(to_text(item["content"]))
        else:
            lines.append(to_text(item))
    return "\n".join(lines)


def _schema(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The structured output's JSON schema; None when it is off (as in Dify: switched off,
    or switched on with no `structured_output` set)."""
    if not data.get("structured_output_enabled") or data.get("structured_output") is None:
        return None
    schema = data["structured_output"].get("schema")
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise NodeError(f"structured_output.schema is not valid JSON: {exc}",
                            "LLMNodeError") from exc
    if not isinstance(schema, dict):
        raise NodeError("structured_output.schema must be a JSON schema object",
                        "LLMNodeError")
    return schema


async def _prompt(call: NodeCall, model: NodeModel, context: str) -> list[Message]:
    data = call.node.data
    jinja_values = {v["variable"]: selected(call, v.get("value_selector"))
                    for v in (data.get("prompt_config") or {}).get("jinja2_variables") or []}

    async def text_of(piece: Mapping[str, Any]) -> str:
        if piece.get("edition_type") == "jinja2":
            text = await _render_jinja(call, piece.get("jinja2_text") or "", jinja_values)
        else:
            text = call.pool.render(piece.get("text") or "")
        # after the references: a `{{#x.y#}}` in the retrieved text stays as it is
        return text.replace(CONTEXT_MARK, context)

    memory = data.get("memory")
    template = data.get("prompt_template") or []
    query = _query(call, memory)
    messages: list[Message]
    if isinstance(template, list):
        messages = [{"role": str(m.get("role") or "user"), "content": text}
                    for m in template if (text := await text_of(m))]
        turns = await memory_turns(call, memory, model, _tokens(messages) + _tokens(query))
        messages += memory_messages(turns)
        if query:
            messages.append({"role": "user", "content": query})
    else:
        text = await text_of(template)
        if memory:
            history = memory_text(await memory_turns(call, memory, model, _tokens(text)),
                                  memory)
            text = text.replace(HISTORIES_MARK, history) if HISTORIES_MARK in text \
                else f"{history}\n{text}"
            text = text.replace(SYS_QUERY_MARK, query)
        messages = [{"role": "user", "content": text}] if text else []
    vision = data.get("vision") or {}
    if vision.get("enabled"):
        await attach_images(call, messages, vision.get("configs") or {})
    if not messages:
        raise NodeError("No prompt found in the LLM configuration. Please ensure a prompt is "
                        "properly configured before proceeding.", "NoPromptFoundError")
    return messages


def _tokens(what: str | Sequence[Message]) -> int:
    if isinstance(what, str):
        return count_tokens_approx(what)
    return sum(count_tokens_approx(message_text(m)) for m in what)


def _query(call: NodeCall, memory: Mapping[str, Any] | None) -> str:
    """With memory, the user's turn after the history: the memory's query template
    (Dify's default: `{{#sys.query#}}`), rendered."""
    if not memory:
        return ""
    return call.pool.render(memory.get("query_prompt_template") or "{{#sys.query#}}")


async def _render_jinja(call: NodeCall, source: str, values: Mapping[str, Any]) -> str:
    """A Jinja2 prompt rendered as Dify renders it: in the code sandbox (a template that
    loops forever or builds a huge string meets the code limits, not this worker)."""
    if not source:
        return ""
    try:
        rendered = await services(call).sandbox.run("jinja2", source, values,
                                                    sandbox_limits(services(call).settings))
    except SandboxError as exc:
        raise NodeError(f"Jinja2 prompt failed: {exc}", "TemplateRenderError") from exc
    return str(rendered.get("result") or "")
