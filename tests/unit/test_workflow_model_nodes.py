"""Pure parts of the model-calling nodes: reading JSON out of model answers and Dify's
completion_params as the OpenAI protocol takes them."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.llm.openai_protocol import Usage
from workers.conversation.chat import dify_usage
from workers.workflow.nodes.base import NodeError
from workers.workflow.nodes.model_calls import json_in, protocol_params, total_usage


@pytest.mark.parametrize(("answer", "parsed"), [
    ('{"a": 1}', {"a": 1}),
    ('  {"a": [1, 2]}\n', {"a": [1, 2]}),
    ('```json\n{"a": "x"}\n```', {"a": "x"}),
    ('Here you are:\n```\n{"a": true}\n```\nAnything else?', {"a": True}),
    ('The result is {"a": {"b": null}} as asked.', {"a": {"b": None}}),
    ("[1, 2]", [1, 2]),
    ("No JSON at all.", None),
    ('{"a": 1', None),
])
def test_json_is_read_out_of_prose_and_fences(answer: str, parsed: Any) -> None:
    assert json_in(answer) == parsed


def test_completion_params_become_protocol_params() -> None:
    assert protocol_params({"temperature": 0.3, "stop": [], "top_p": None}) == {
        "temperature": 0.3}
    assert protocol_params({"stop": ["Human:"], "response_format": "json_object"}) == {
        "stop": ["Human:"], "response_format": {"type": "json_object"}}
    schema = {"name": "s", "schema": {"type": "object"}}
    assert protocol_params({"response_format": "json_schema",
                            "json_schema": '{"name": "s", "schema": {"type": "object"}}'}) == {
        "response_format": {"type": "json_schema", "json_schema": schema}}
    with pytest.raises(NodeError, match="json_schema is not valid JSON"):
        protocol_params({"response_format": "json_schema", "json_schema": "{nope"})


def test_usage_of_several_calls_adds_up() -> None:
    first = dify_usage(Usage(10, 2, 12), 0.5)
    second = dify_usage(Usage(5, 1, 6), 0.25)
    assert total_usage(first, None, second) == dify_usage(Usage(15, 3, 18), 0.75)
    assert total_usage(None, None) is None
