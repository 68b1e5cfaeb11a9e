"""The `parameter-extractor` node, as Dify's: the model reads the query and fills the node's
parameters. `reasoning_mode: function_call` asks through a forced tool call when the model
has tool calls; otherwise (`prompt`, or a model without them) the prompt asks for a JSON
object and the answer is parsed. Values are checked against the parameters (required,
types, select options) and brought to their types; what fails is reported in `__is_success`
/ `__reason`, never by failing the node (as in Dify)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.llm.openai_protocol import Message
from indexing.tokens import count_tokens_approx
from workers.workflow.nodes.base import NodeCall, NodeResult
from workers.workflow.nodes.model_calls import (
    ask,
    attach_images,
    json_in,
    memory_text,
    memory_turns,
    message_text,
    node_model,
    selected,
)
from workflow_graph.variables import to_text

TOOL_NAME = "extract_parameters"
SYSTEM_PROMPT = """You extract structured information from the user's text. Fill every \
parameter of this JSON schema from the text; give one the text says nothing about its empty \
value ("", 0, false or []), never an invented one.
{schema}
{answer_as}
Instructions from the workflow's author (may be empty):
<instructions>
{instruction}
</instructions>
The chat history between the user and the assistant so far is inside <histories> tags:
<histories>
{histories}
</histories>"""
ANSWER_BY_TOOL = f"Answer by calling the `{TOOL_NAME}` function."
ANSWER_AS_JSON = ("Answer only with one JSON object holding the parameters: no prose, no "
                  "markdown fences.")
# A worked example of the forced call (the protocol's tool-call turn: call, result, reply)
TOOL_EXAMPLE: list[Message] = [
    {"role": "user", "content": "Table for four at Luigi's tomorrow at 8 pm, please."},
    {"role": "assistant", "content": "", "tool_calls": [{
        "id": "call_example", "type": "function", "function": {
            "name": TOOL_NAME, "arguments": json.dumps(
                {"restaurant": "Luigi's", "people": 4, "time": "tomorrow 20:00"})}}]},
    {"role": "tool", "tool_call_id": "call_example",
     "content": "Great! You have called the function with the correct parameters."},
    {"role": "assistant", "content": "I have extracted the parameters, let's move on."},
]
NO_RESULT = "Failed to extract result from function call or text response, using empty result."

_JSON_TYPES = {"string": "string", "select": "string", "number": "number", "bool": "boolean",
               "boolean": "boolean"}
_DEFAULTS: dict[str, Any] = {"string": "", "select": "", "number": 0, "bool": False,
                             "boolean": False}


async def run(call: NodeCall) -> NodeResult:
    data = call.node.data
    parameters: Sequence[Mapping[str, Any]] = data.get("parameters") or []
    query = to_text(selected(call, data.get("query")))
    model = await node_model(call, data.get("model"))
    schema = _schema(parameters)
    by_tool = data.get("reasoning_mode") == "function_call" and "tool-call" in model.features
    memory = data.get("memory")
    turns = await memory_turns(call, memory, model,
                               count_tokens_approx(query) + count_tokens_approx(str(schema)))
    system = SYSTEM_PROMPT.format(schema=json.dumps(schema, ensure_ascii=False),
                                  answer_as=ANSWER_BY_TOOL if by_tool else ANSWER_AS_JSON,
                                  instruction=call.pool.render(data.get("instruction") or ""),
                                  histories=memory_text(turns, memory))
    messages: list[Message]
    if model.mode == "completion":
        messages = [{"role": "user", "content": f"{system}\n\nText:\n{query}\n\nJSON:"}]
    else:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": query}]
    vision = data.get("vision") or {}
    if vision.get("enabled"):  # the images go with the user's text
        await attach_images(call, messages, vision.get("configs") or {})
    if by_tool:
        messages[-1:-1] = TOOL_EXAMPLE  # as Dify: one worked call before the user's text
        answer = await ask(call, model, messages, tools=[{"type": "function", "function": {
            "name": TOOL_NAME, "description": "Extract parameters from the text",
            "parameters": schema}}], tool_choice={"type": "function",
                                                 "function": {"name": TOOL_NAME}})
        # no tool call: the JSON in the text, as in Dify
        found = next((json_in(c.arguments) for c in answer.tool_calls
                      if c.name == TOOL_NAME), None) if answer.tool_calls \
            else json_in(answer.text)
    else:
        answer = await ask(call, model, messages)
        found = json_in(answer.text)
    error = ""
    if not isinstance(found, dict) or not found:
        found, error = {}, NO_RESULT
    else:
        error = _invalid(parameters, found)
    return NodeResult(
        outputs={"__is_success": 0 if error else 1, "__reason": error or None,
                 "__usage": answer.usage, **_typed(parameters, found)},
        inputs={"query": query, "parameters": [dict(p) for p in parameters],
                "instruction": data.get("instruction") or ""},
        usage=answer.usage,
        process_data={"model_mode": model.mode, "reasoning_mode": "function_call" if by_tool
                      else "prompt", "usage": answer.usage,
                      "llm_text": answer.text, "function": found,
                      "prompts": [{"role": m["role"], "text": message_text(m)}
                                  for m in messages]})


def _schema(parameters: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for p in parameters:
        kind = str(p.get("type") or "string")
        if kind.startswith("array["):
            item = kind[6:-1]
            prop: dict[str, Any] = {"type": "array", "items": {
                "type": "object" if item == "object" else _JSON_TYPES.get(item, "string")}}
        else:
            prop = {"type": _JSON_TYPES.get(kind, "string")}
        if kind == "select" and p.get("options"):
            prop["enum"] = list(p["options"])
        prop["description"] = str(p.get("description") or "")
        properties[str(p["name"])] = prop
    return {"type": "object", "properties": properties,
            "required": [str(p["name"]) for p in parameters if p.get("required")]}


def _invalid(parameters: Sequence[Mapping[str, Any]], found: Mapping[str, Any]) -> str:
    """Why the extracted values do not fit the parameters, or "". As in Dify, every
    parameter must be there (optional ones too) and of its type."""
    if len(parameters) != len(found):
        return "Invalid number of parameters"
    for p in parameters:
        name, kind = str(p["name"]), str(p.get("type") or "string")
        value = found.get(name)
        if p.get("required") and name not in found:
            return f"Parameter {name} is required"
        if kind == "select" and p.get("options") and value not in p["options"]:
            return f"Invalid `select` value for parameter {name}"
        if kind == "number" and not _is_number(value):
            return f"Invalid `number` value for parameter {name}"
        if kind in ("bool", "boolean") and not isinstance(value, bool):
            return f"Invalid `bool` value for parameter {name}"
        if kind == "string" and not isinstance(value, str):
            return f"Invalid `string` value for parameter {name}"
        if kind.startswith("array["):
            if not isinstance(value, list):
                return f"Invalid `array` value for parameter {name}"
            item = kind[6:-1]
            fits = {"number": _is_number, "string": lambda v: isinstance(v, str),
                    "object": lambda v: isinstance(v, dict),
                    "bool": lambda v: isinstance(v, bool)}.get(item, lambda v: True)
            if not all(fits(v) for v in value):
                return f"Invalid `{kind}` value for parameter {name}"
    return ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _typed(parameters: Sequence[Mapping[str, Any]], found: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter with a value of its type: the model's when it converts, else the
    type's empty value."""
    out: dict[str, Any] = {}
    for p in parameters:
        name, kind = str(p["name"]), str(p.get("type") or "string")
        value = found.get(name)
        out[name] = _DEFAULTS.get(kind, []) if value is None else _converted(kind, value)
    return out


def _converted(kind: str, value: Any) -> Any:
    if kind == "number":
        if _is_number(value):
            return value
        try:
            number = float(str(value))
        except ValueError:
            return 0
        return int(number) if number.is_integer() and "." not in str(value) else number
    if kind in ("bool", "boolean"):
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
    if kind.startswith("array["):
        item = kind[6:-1]
        items = value if isinstance(value, list) else []
        return [v for v in (_converted(item, v) if item != "object" else v for v in items)
                if item != "object" or isinstance(v, dict)]
    if kind in ("string", "select"):
        return value if isinstance(value, str) else ""
    return value
