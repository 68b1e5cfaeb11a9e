"""assigner (Dify's variable assigner), versions 1 and 2: every write mode on conversation
variables, returned as `updates` for the scheduler, and Dify's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_workflow_containers import (
    COUNTER,
    Recorder,
    call_of,
    edge,
    loop_graph,
    n_at_least,
    node,
)
from tests.workflow_nodes import execute, services
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import NodeError
from workflow_graph.graph import Node
from workflow_graph.variables import VariablePool

CONVERSATION = {"name": "Ann", "count": 10, "tags": ["a", "b", "c"], "profile": {"x": 1},
                "flag": False, "empty": []}
POOL = VariablePool.for_run(conversation=CONVERSATION).with_outputs(
    "llm", {"text": "hello", "list": ["y", "z"], "nothing": None})


def _item(name: str, operation: str, value: Any = None, input_type: str = "constant"
          ) -> dict[str, Any]:
    if operation in ("clear", "remove-first", "remove-last"):
        input_type = "variable"  # what Dify's editor saves for operations without input
    return {"variable_selector": ["conversation", name], "operation": operation,
            "input_type": input_type, "value": value}


async def _assign(tmp_path: Path, *items: dict[str, Any]) -> dict[str, Any]:
    result = await execute("assigner", {"version": "2", "items": list(items)}, POOL,
                           services(tmp_path))
    assert result.outputs == {}
    return dict(result.updates.get("conversation", {}))


@pytest.mark.parametrize(("item", "expected"), [
    (_item("name", "over-write", ["llm", "text"], "variable"), {"name": "hello"}),
    (_item("name", "set", "Bob"), {"name": "Bob"}),
    (_item("name", "clear"), {"name": ""}),
    (_item("count", "+=", 5), {"count": 15}),
    (_item("count", "-=", 2.5), {"count": 7.5}),
    (_item("count", "*=", 3), {"count": 30}),
    (_item("count", "/=", 4), {"count": 2.5}),
    (_item("count", "clear"), {"count": 0}),
    (_item("tags", "append", ["llm", "text"], "variable"), {"tags": ["a", "b", "c", "hello"]}),
    (_item("tags", "extend", ["llm", "list"], "variable"),
     {"tags": ["a", "b", "c", "y", "z"]}),
    (_item("tags", "over-write", ["llm", "list"], "variable"), {"tags": ["y", "z"]}),
    (_item("tags", "remove-first"), {"tags": ["b", "c"]}),
    (_item("tags", "remove-last"), {"tags": ["a", "b"]}),
    (_item("tags", "clear"), {"tags": []}),
    (_item("empty", "remove-first"), {"empty": []}),
    (_item("profile", "set", '{"y": 2}'), {"profile": {"y": 2}}),
    (_item("profile", "clear"), {"profile": {}}),
    (_item("flag", "set", True), {"flag": True}),
])
async def test_every_operation_writes_the_conversation_variable(
        tmp_path: Path, item: dict[str, Any], expected: dict[str, Any]) -> None:
    assert await _assign(tmp_path, item) == expected


async def test_items_apply_in_order_each_seeing_the_last(tmp_path: Path) -> None:
    updates = await _assign(tmp_path, _item("count", "+=", 5), _item("count", "*=", 2),
                            _item("tags", "remove-first"), _item("tags", "remove-first"))
    assert updates == {"count": 30, "tags": ["c"]}


async def test_an_input_holding_nothing_is_skipped(tmp_path: Path) -> None:
    assert await _assign(tmp_path, _item("name", "over-write", ["llm", "nothing"],
                                         "variable")) == {}


async def test_the_result_logs_the_updated_variables(tmp_path: Path) -> None:
    result = await execute("assigner", {"version": "2", "items": [_item("count", "+=", 1)]},
                           POOL, services(tmp_path))
    assert result.process_data["count"] == 11
    assert result.process_data["__updated_variables"] == [
        {"name": "count", "selector": ["conversation", "count"], "value_type": "number",
         "new_value": 11}]


@pytest.mark.parametrize(("item", "message"), [
    (_item("missing", "set", "x"), r"Variable \['conversation', 'missing'\] not found"),
    ({**_item("x", "set", "x"), "variable_selector": ["llm", "text"]}, "not found"),
    (_item("name", "+=", 1), "Operation \\+= is not supported for type string"),
    (_item("tags", "set", ["x"]), "Operation set is not supported for type array"),
    (_item("count", "+=", ["llm", "text"], "variable"),
     "Input type variable is not supported for operation \\+="),
    (_item("tags", "append", "x"), "Input type constant is not supported for operation append"),
    (_item("count", "/=", 0), "Invalid input value 0"),
    (_item("count", "set", "7"), "Invalid input value 7"),
    (_item("profile", "set", "not json"), "Invalid input value not json"),
    (_item("tags", "append", ["llm", "list"], "variable"), "Invalid input value"),
    (_item("name", "over-write", ["llm", "absent"], "variable"), "not found"),
])
async def test_what_dify_refuses_fails_the_node(tmp_path: Path, item: dict[str, Any],
                                                message: str) -> None:
    with pytest.raises(NodeError, match=message):
        await _assign(tmp_path, item)


async def test_a_loop_variable_is_assignable_inside_its_loop(tmp_path: Path) -> None:
    pool = POOL.with_outputs("loop1", {"i": 1})
    loop = Node("loop1", "loop", "Loop", {})
    result = await execute("assigner", {"version": "2", "items": [
        {"variable_selector": ["loop1", "i"], "operation": "+=", "input_type": "constant",
         "value": 1}]}, pool, services(tmp_path), extra_nodes=(loop,))
    assert result.updates == {"loop1": {"i": 2}}


@pytest.mark.parametrize(("mode", "expected"), [
    ("over-write", {"tags": ["y", "z"]}),
    ("append", {"tags": ["a", "b", "c", ["y", "z"]]}),
    ("clear", {"tags": []}),
])
async def test_version_1_write_modes(tmp_path: Path, mode: str,
                                     expected: dict[str, Any]) -> None:
    data = {"assigned_variable_selector": ["conversation", "tags"], "write_mode": mode,
            "input_variable_selector": ["llm", "list"]}
    result = await execute("assigner", data, POOL, services(tmp_path))
    assert result.updates == {"conversation": expected}


async def test_version_1_refuses_a_missing_input(tmp_path: Path) -> None:
    data = {"assigned_variable_selector": ["conversation", "name"], "write_mode": "over-write",
            "input_variable_selector": ["llm", "absent"]}
    with pytest.raises(NodeError, match="input value not found"):
        await execute("assigner", data, POOL, services(tmp_path))


async def test_inside_a_real_loop_it_counts_the_loop_variable_and_logs_each_round() -> None:
    graph = loop_graph(
        node("inc", "assigner", "lp", version="2", items=[
            {"variable_selector": ["lp", "n"], "operation": "+=", "input_type": "constant",
             "value": 1},
            {"variable_selector": ["conversation", "tags"], "operation": "append",
             "input_type": "variable", "value": ["lp", "n"]}]),
        body_edges=[edge("lp-start", "inc")], loop_count=10,
        break_conditions=n_at_least(3), logical_operator="and", **COUNTER)
    pool = VariablePool.for_run(conversation={"tags": []})
    result = await EXECUTORS["loop"](call_of(graph, "lp", Recorder(), pool))
    assert result.outputs == {"n": 3, "loop_round": 3}
    # the conversation variable leaves the loop as its update; the loop's own stays inside
    assert result.updates == {"conversation": {"tags": [1, 2, 3]}}
