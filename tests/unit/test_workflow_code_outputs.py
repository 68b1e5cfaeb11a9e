"""A code node's outputs checked against its declaration as Dify's code node checks them
(types, CODE_MAX_* limits, its error messages), and its inputs taken from the pool."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.sandbox.bubblewrap import BubblewrapSandbox
from config import Settings
from tests.code_nodes import SandboxServices, run_node
from workers.workflow.nodes.base import NodeError
from workers.workflow.nodes.code import check_outputs, selected_inputs
from workflow_graph.variables import VariablePool

SETTINGS = Settings(CODE_MAX_STRING_ARRAY_LENGTH=3, CODE_MAX_OBJECT_ARRAY_LENGTH=2,
                    CODE_MAX_NUMBER_ARRAY_LENGTH=4, CODE_MAX_DEPTH=3)


def declare(**types: Any) -> dict[str, Any]:
    return {name: kind if isinstance(kind, dict) else {"type": kind}
            for name, kind in types.items()}


def error_of(result: dict[str, Any], schema: dict[str, Any] | None) -> NodeError:
    with pytest.raises(NodeError) as caught:
        check_outputs(result, schema, SETTINGS)
    return caught.value


def test_declared_outputs_pass_and_nulls_are_allowed() -> None:
    schema = declare(s="string", n="number", f="number", b="boolean", tags="array[string]",
                     nums="array[number]", obj="object", none="array[object]")
    result = {"s": "a\x00b", "n": 3, "f": 0.25, "b": True, "tags": ["x", None],
              "nums": [1, 2.5], "obj": {"k": {"deep": [1, 2]}}, "none": None}
    assert check_outputs(result, schema, SETTINGS) == {**result, "s": "ab"}


def test_nested_declared_children_are_checked_by_path() -> None:
    schema = declare(user={"type": "object", "children": declare(name="string")},
                     rows={"type": "array[object]", "children": declare(id="number")})
    assert check_outputs({"user": {"name": "ada"}, "rows": [{"id": 1}, None]}, schema,
                         SETTINGS) == {"user": {"name": "ada"}, "rows": [{"id": 1}, None]}
    assert error_of({"user": {"name": 1}, "rows": []}, schema).message == (
        "Output variable `.user.name` must be a string")
    assert error_of({"user": {"name": "a"}, "rows": [{"id": "x"}]}, schema).message == (
        "Output variable `rows[0].id` must be a number")


@pytest.mark.parametrize(("result", "schema", "message"), [
    ({"n": "7"}, declare(n="number"), "Output variable `n` must be a number"),
    ({"n": 2 ** 63}, declare(n="number"), "Output variable `n` is out of range, it must be "
     "between -9223372036854775808 and 9223372036854775807."),
    ({}, declare(n="number"), "Output n is missing."),
    ({"o": [1]}, declare(o="object"), "Output o is not an object, got <class 'list'> instead."),
    ({"a": "x"}, declare(a="array[string]"),
     "Output a is not an array, got <class 'str'> instead."),
    ({"a": ["1", "2", "3", "4"]}, declare(a="array[string]"),
     "The length of output variable `a` must be less than 3 elements."),
    ({"a": [1, 2, 3, 4, 5]}, declare(a="array[number]"),
     "The length of output variable `a` must be less than 4 elements."),
    ({"a": [{}, {}, {}]}, declare(a="array[object]"),
     "The length of output variable `a` must be less than 2 elements."),
    ({"a": [{}, 3]}, declare(a="array[object]"),
     "Output a[1] is not an object, got <class 'int'> instead at index 1."),
    ({"b": 1}, declare(b="boolean"), "Output variable `b` must be a boolean"),
    ({"d": "x"}, declare(d="date"), "Output type date is not supported."),
])
def test_a_value_against_its_declaration_fails_with_difys_message(
        result: dict[str, Any], schema: dict[str, Any], message: str) -> None:
    error = error_of(result, schema)
    assert (error.error_type, error.message) == ("OutputValidationError", message)


def test_too_precise_floats_fail() -> None:
    settings = Settings(CODE_MAX_PRECISION=3)
    with pytest.raises(NodeError, match="has too high precision, it must be less than 3"):
        check_outputs({"f": 0.12345}, declare(f="number"), settings)
    assert check_outputs({"f": 0.125}, declare(f="number"), settings) == {"f": 0.125}


def test_an_undeclared_output_fails_the_node() -> None:
    error = error_of({"n": 1, "extra": 2}, declare(n="number"))
    assert (error.error_type, error.message) == ("CodeNodeError",
                                                 "Not all output parameters are validated.")


def test_objects_deeper_than_code_max_depth_fail() -> None:
    error = error_of({"o": {"a": {"b": {"c": 1}}}}, declare(o="object"))
    assert (error.error_type, error.message) == ("DepthLimitError",
                                                 "Depth limit 3 reached, object too deep.")


def test_without_a_declaration_values_are_checked_by_their_own_type() -> None:
    assert check_outputs({"a": [1, 2], "s": ["x"], "o": {"k": "v"}}, None, SETTINGS) == {
        "a": [1, 2], "s": ["x"], "o": {"k": "v"}}
    assert error_of({"a": [1, "x"]}, None).message == (
        "Output .a is not a valid array. make sure all elements are of the same type.")


def test_inputs_are_the_selected_values_and_none_for_a_missing_one() -> None:
    pool = VariablePool.for_run(system={"query": "q"}).with_outputs(
        "start", {"profile": {"age": 3}})
    variables = [{"variable": "q", "value_selector": ["sys", "query"]},
                 {"variable": "age", "value_selector": ["start", "profile", "age"]},
                 {"variable": "gone", "value_selector": ["start", "nothing"]},
                 {"variable": "empty", "value_selector": []}]
    assert selected_inputs(pool, variables) == {"q": "q", "age": 3, "gone": None,
                                                "empty": None}


async def test_a_language_the_code_node_does_not_offer_fails_it() -> None:
    services = SandboxServices(Settings(), BubblewrapSandbox())
    with pytest.raises(NodeError) as caught:
        await run_node(services, "code", {"code_language": "jinja2", "code": "{{ 1 }}"},
                       VariablePool())
    assert (caught.value.error_type, caught.value.message) == (
        "CodeNodeError", "Unsupported code language: jinja2")
