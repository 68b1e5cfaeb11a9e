"""list-operator: Dify's filter → extract → order → limit on arrays of strings, numbers
and files, its outputs and its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.workflow_nodes import execute, services
from workers.workflow.nodes.base import NodeError
from workflow_graph.variables import VariablePool


def _file(name: str, size: int, kind: str = "document") -> dict[str, Any]:
    return {"dify_model_identity": "__dify__file__", "type": kind, "filename": name,
            "extension": "." + name.rsplit(".", 1)[-1], "mime_type": "application/pdf",
            "transfer_method": "local_file", "remote_url": None, "size": size}


def _pool(value: Any) -> VariablePool:
    return VariablePool.for_run(system={"query": "b"}).with_outputs("start", {"items": value})


def _data(**parts: Any) -> dict[str, Any]:
    return {"variable": ["start", "items"], "filter_by": {"enabled": False, "conditions": []},
            "order_by": {"enabled": False, "key": "", "value": "asc"},
            "limit": {"enabled": False, "size": -1}, **parts}


async def test_strings_are_filtered_ordered_and_limited_in_dify_order(tmp_path: Path) -> None:
    data = _data(filter_by={"enabled": True, "conditions": [
                     {"comparison_operator": "contains", "value": "a"},
                     {"comparison_operator": "not contains", "value": "{{#sys.query#}}"}]},
                 order_by={"enabled": True, "value": "desc"},
                 limit={"enabled": True, "size": 2})
    result = await execute("list-operator", data,
                           _pool(["apple", "banana", "cherry", "grape", "avocado", "pear"]),
                           services(tmp_path))
    # "banana" holds the rendered {{#sys.query#}}; the rest with an "a", descending, two
    assert result.outputs == {"result": ["pear", "grape"], "first_record": "pear",
                              "last_record": "grape"}
    assert result.inputs["variable"][0] == "apple"


async def test_numbers_compare_as_numbers_and_extract_takes_the_nth(tmp_path: Path) -> None:
    data = _data(filter_by={"enabled": True, "conditions": [
                     {"comparison_operator": "≥", "value": "3"}]},
                 extract_by={"enabled": True, "serial": "2"})
    result = await execute("list-operator", data, _pool([5, 1, 10, 3, 2]), services(tmp_path))
    assert result.outputs == {"result": [10], "first_record": 10, "last_record": 10}


async def test_booleans_filter_by_is_and_is_not(tmp_path: Path) -> None:
    data = _data(filter_by={"enabled": True, "conditions": [
                     {"comparison_operator": "is not", "value": False}]})
    result = await execute("list-operator", data, _pool([True, False, True]),
                           services(tmp_path))
    assert result.outputs["result"] == [True, True]


async def test_files_filter_and_order_by_their_attributes(tmp_path: Path) -> None:
    files = [_file("b.pdf", 30), _file("a.png", 10, "image"), _file("c.pdf", 20)]
    data = _data(filter_by={"enabled": True, "conditions": [
                     {"key": "type", "comparison_operator": "in", "value": ["document"]},
                     {"key": "size", "comparison_operator": ">", "value": "15"}]},
                 order_by={"enabled": True, "key": "size", "value": "asc"})
    result = await execute("list-operator", data, _pool(files), services(tmp_path))
    assert [f["filename"] for f in result.outputs["result"]] == ["c.pdf", "b.pdf"]
    assert result.outputs["last_record"]["filename"] == "b.pdf"


async def test_an_empty_array_gives_empty_outputs(tmp_path: Path) -> None:
    result = await execute("list-operator", _data(), _pool([]), services(tmp_path))
    assert result.outputs == {"result": [], "first_record": None, "last_record": None}


@pytest.mark.parametrize(("value", "data", "message"), [
    (["a"], _data(variable=["start", "nope"]), "Variable not found for selector"),
    ([{"x": 1}], _data(), "is not an ArrayFileSegment, ArrayNumberSegment, ArrayString"),
    ([True], _data(filter_by={"enabled": True, "conditions": [
        {"comparison_operator": "is", "value": "true"}]}), "Invalid filter value: true"),
    (["a"], _data(extract_by={"enabled": True, "serial": "3"}),
     "Invalid serial index: must be <= 1, got 3"),
    (["a"], _data(filter_by={"enabled": True, "conditions": [
        {"comparison_operator": ">", "value": "1"}]}), "Invalid condition: >"),
    ([1], _data(filter_by={"enabled": True, "conditions": [
        {"comparison_operator": ">", "value": "many"}]}), "Invalid filter value: many"),
    ([_file("a.pdf", 1)], _data(order_by={"enabled": True, "key": "colour", "value": "asc"}),
     "Invalid order key: colour"),
])
async def test_what_dify_refuses_fails_the_node(tmp_path: Path, value: Any,
                                                data: dict[str, Any], message: str) -> None:
    with pytest.raises(NodeError, match=message):
        await execute("list-operator", data, _pool(value), services(tmp_path))
