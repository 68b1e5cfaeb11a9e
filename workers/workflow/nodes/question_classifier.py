"""The `question-classifier` node, as Dify's: the model puts the query into one of the
node's classes; the branch taken is the chosen class's id (its out-edge handle). An answer
naming no known class takes the first class, as Dify does."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.llm.openai_protocol import Message
from indexing.tokens import count_tokens_approx
from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
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

SYSTEM_PROMPT = """You are a text classifier. Put the input text into exactly one of the \
given categories and answer with JSON only, in this form:
{{"keywords": ["words of the text that decided it"], "category_id": "...", \
"category_name": "..."}}
The chat history between the user and the assistant so far is inside <histories> tags; use \
it to understand the input.
<histories>
{histories}
</histories>"""
USER_PROMPT = """{{"input_text": {input_text}, "categories": {categories}, \
"classification_instructions": {instructions}}}"""
EXAMPLE_QUESTION = USER_PROMPT.format(
    input_text=json.dumps("The parcel arrived two weeks late and the box was crushed."),
    categories=json.dumps([{"category_id": "c1", "category_name": "Delivery problem"},
                           {"category_id": "c2", "category_name": "Billing question"}]),
    instructions=json.dumps(""))
EXAMPLE_ANSWER = json.dumps({"keywords": ["arrived", "late", "crushed"],
                             "category_id": "c1", "category_name": "Delivery problem"})


async def run(call: NodeCall) -> NodeResult:
    data = call.node.data
    classes: Sequence[Mapping[str, Any]] = data.get("classes") or []
    if not classes:
        raise NodeError("The question classifier has no classes.", "QuestionClassifierNodeError")
    query = to_text(selected(call, data.get("query_variable_selector")))
    instruction = call.pool.render(data.get("instruction") or "")
    model = await node_model(call, data.get("model"))
    categories = [{"category_id": str(c["id"]), "category_name": str(c.get("name") or "")}
                  for c in classes]
    question = USER_PROMPT.format(input_text=json.dumps(query, ensure_ascii=False),
                                  categories=json.dumps(categories, ensure_ascii=False),
                                  instructions=json.dumps(instruction, ensure_ascii=False))
    memory = data.get("memory")
    histories = memory_text(await memory_turns(call, memory, model, count_tokens_approx(question)),
                            memory)
    system = SYSTEM_PROMPT.format(histories=histories)
    messages: list[Message]
    if model.mode == "completion":
        messages = [{"role": "user", "content": "\n\n".join(
            (system, f"Example input: {EXAMPLE_QUESTION}", f"Example output: {EXAMPLE_ANSWER}",
             f"Input: {question}", "Output:"))}]
    else:
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": EXAMPLE_QUESTION},
                    {"role": "assistant", "content": EXAMPLE_ANSWER},
                    {"role": "user", "content": question}]
    vision = data.get("vision") or {}
    if vision.get("enabled"):  # the images go with the user's text
        await attach_images(call, messages, vision.get("configs") or {})
    answer = await ask(call, model, messages)
    chosen = _chosen(json_in(answer.text), categories)
    return NodeResult(
        outputs={"class_name": chosen["category_name"], "class_id": chosen["category_id"],
                 "usage": answer.usage},
        handle=chosen["category_id"], inputs={"query": query}, usage=answer.usage,
        process_data={"model_mode": model.mode, "usage": answer.usage,
                      "finish_reason": answer.finish_reason,
                      "prompts": [{"role": m["role"], "text": message_text(m)}
                                  for m in messages]})


def _chosen(parsed: Any, categories: list[dict[str, str]]) -> dict[str, str]:
    if isinstance(parsed, Mapping):
        by_id = {c["category_id"]: c for c in categories}
        if str(parsed.get("category_id")) in by_id:
            return by_id[str(parsed.get("category_id"))]
        by_name = {c["category_name"]: c for c in categories}
        if str(parsed.get("category_name")) in by_name:
            return by_name[str(parsed.get("category_name"))]
    return categories[0]
