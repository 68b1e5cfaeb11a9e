"""If-else conditions answer as Dify's condition processor does: every comparison operator,
and/or with short-circuit, cases in order, the old single-group form."""

from __future__ import annotations

from typing import Any

import pytest

from workflow_graph.conditions import COMPARISON_OPERATORS, choose_branch, compare
from workflow_graph.errors import ConditionError
from workflow_graph.variables import VariablePool

POOL = VariablePool.for_run(system={"query": "refund my order"}).with_outputs(
    "n", {"text": "hello world", "empty": "", "count": 3, "ratio": 0.5, "flag": True,
          "none": None, "tags": ["a", "b", "c"], "files": [
              {"transfer_method": "local_file", "type": "image", "extension": "png",
               "name": "cat.png"},
              {"transfer_method": "remote_url", "type": "document", "extension": ".pdf",
               "name": "doc.pdf"}]})


def cond(var: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"variable_selector": ["n", var], "comparison_operator": op, "value": value, **extra}


@pytest.mark.parametrize(("var", "op", "value", "expected"), [
    ("text", "contains", "world", True), ("text", "contains", "moon", False),
    ("empty", "contains", "x", False), ("tags", "contains", "b", True),
    ("text", "not contains", "moon", True), ("empty", "not contains", "x", True),
    ("tags", "not contains", "a", False),
    ("text", "start with", "hello", True), ("text", "start with", "world", False),
    ("empty", "start with", "", False),
    ("text", "end with", "world", True), ("text", "end with", "hello", False),
    ("text", "is", "hello world", True), ("text", "is", "hello", False),
    ("none", "is", "x", False), ("flag", "is", "true", True),
    ("text", "is not", "hello", True), ("none", "is not", "x", False),
    ("empty", "empty", None, True), ("none", "empty", None, True), ("tags", "empty", None,
                                                                    False),
    ("text", "not empty", None, True), ("empty", "not empty", None, False),
    ("count", "=", "3", True), ("count", "=", "4", False), ("ratio", "=", "0.5", True),
    ("flag", "=", "1", True), ("none", "=", "3", False),
    ("count", "≠", "4", True), ("count", "≠", "3", False), ("none", "≠", "3", False),
    ("count", ">", "2", True), ("count", ">", "3", False), ("ratio", ">", "0.25", True),
    ("count", "<", "4", True), ("count", "<", "3", False),
    ("count", "≥", "3", True), ("count", "≥", "4", False),
    ("count", "≤", "3", True), ("count", "≤", "2", False), ("none", "≤", "2", False),
    ("none", "null", None, True), ("text", "null", None, False),
    ("text", "not null", None, True), ("none", "not null", None, False),
    ("text", "in", ["hello world", "x"], True), ("text", "in", ["x"], False),
    ("empty", "in", [""], False),
    ("text", "not in", ["x"], True), ("text", "not in", ["hello world"], False),
    ("empty", "not in", ["x"], True),
    ("tags", "all of", ["a", "c"], True), ("tags", "all of", ["a", "z"], False),
    ("text", "exists", None, True), ("none", "exists", None, False),
    ("none", "not exists", None, True), ("text", "not exists", None, False),
])
def test_each_operator(var: str, op: str, value: Any, expected: bool) -> None:
    decision = choose_branch({"cases": [{"case_id": "yes", "logical_operator": "and",
                                         "conditions": [cond(var, op, value)]}]}, POOL)
    assert decision.handle == ("yes" if expected else "false")


def test_the_table_above_covers_every_operator() -> None:
    assert {"contains", "not contains", "start with", "end with", "is", "is not", "empty",
            "not empty", "=", "≠", ">", "<", "≥", "≤", "null", "not null", "in", "not in",
            "all of", "exists", "not exists"} == COMPARISON_OPERATORS


@pytest.mark.parametrize(("op", "actual", "expected"), [
    ("contains", 3, "3"), ("start with", ["a"], "a"), ("is", 3, "3"),
    ("=", "3", "3"), (">", "3", "2"), (">", 3, "2.5"),  # int("2.5") fails, as in Dify
    ("in", "a", "a,b"), ("all of", ["a"], "a"), ("regex match", "a", "a"),
])
def test_type_mismatches_fail_the_condition(op: str, actual: Any, expected: Any) -> None:
    with pytest.raises(ConditionError):
        compare(op, actual, expected)


def test_expected_values_are_templates() -> None:
    data = {"cases": [{"case_id": "c", "logical_operator": "and",
                       "conditions": [{"variable_selector": ["sys", "query"],
                                       "comparison_operator": "start with",
                                       "value": "{{#n.prefix#}}"}]}]}
    pool = POOL.with_outputs("n", {"prefix": "refund"})
    assert choose_branch(data, pool).handle == "c"


def test_a_missing_variable_fails_the_node() -> None:
    with pytest.raises(ConditionError, match="not found"):
        choose_branch({"cases": [{"case_id": "c", "conditions": [cond("ghost", "empty")]}]},
                      POOL)


def test_and_or_short_circuit_before_a_failing_condition() -> None:
    failing = cond("ghost", "empty")
    assert choose_branch({"cases": [{"case_id": "c", "logical_operator": "and", "conditions": [
        cond("text", "contains", "moon"), failing]}]}, POOL).handle == "false"
    assert choose_branch({"cases": [{"case_id": "c", "logical_operator": "or", "conditions": [
        cond("text", "contains", "world"), failing]}]}, POOL).handle == "c"
    with pytest.raises(ConditionError):
        choose_branch({"cases": [{"case_id": "c", "logical_operator": "or", "conditions": [
            cond("text", "contains", "moon"), failing]}]}, POOL)


def test_cases_are_tried_in_order_and_the_first_passing_wins() -> None:
    data = {"cases": [
        {"case_id": "big", "logical_operator": "and", "conditions": [cond("count", ">", "10")]},
        {"case_id": "some", "logical_operator": "or", "conditions": [
            cond("count", ">", "100"), cond("count", ">", "1")]},
        {"case_id": "any", "logical_operator": "and", "conditions": [cond("count", ">", "0")]},
    ]}
    decision = choose_branch(data, POOL)
    assert decision.handle == "some"
    assert decision.outputs == {"result": True, "selected_case_id": "some"}
    assert choose_branch({"cases": data["cases"][:1]}, POOL).outputs == {
        "result": False, "selected_case_id": "false"}


def test_the_pre_cases_form_answers_true_or_false() -> None:
    data = {"logical_operator": "or", "conditions": [cond("count", "=", "9"),
                                                     cond("text", "contains", "hello")]}
    assert choose_branch(data, POOL).handle == "true"
    data["logical_operator"] = "and"
    assert choose_branch(data, POOL).handle == "false"


def test_boolean_comparands_are_converted_from_text() -> None:
    assert compare("is", True, True)
    data = {"cases": [{"case_id": "c", "conditions": [cond("flag", "is", "false")]}]}
    assert choose_branch(data, POOL).handle == "false"
    with pytest.raises(ConditionError, match="not a boolean"):
        choose_branch({"cases": [{"case_id": "c", "conditions": [cond("flag", "is", "yes")]}]},
                      POOL)


def test_file_lists_are_matched_on_their_attributes() -> None:
    def files(op: str, *subs: dict[str, Any], logic: str = "and") -> str:
        condition = cond("files", op, sub_variable_condition={
            "logical_operator": logic, "conditions": list(subs)})
        return choose_branch({"cases": [{"case_id": "c", "conditions": [condition]}]},
                             POOL).handle

    assert files("contains", {"key": "extension", "comparison_operator": "is",
                              "value": "pdf"}) == "c"
    assert files("contains", {"key": "type", "comparison_operator": "is",
                              "value": "audio"}) == "false"
    # A "not" operator must hold for every file.
    assert files("contains", {"key": "type", "comparison_operator": "not in",
                              "value": ["audio"]}) == "c"
    assert files("contains", {"key": "name", "comparison_operator": "not contains",
                              "value": "cat"}) == "false"
    with pytest.raises(ConditionError, match="Sub variable is required"):
        choose_branch({"cases": [{"case_id": "c", "conditions": [
            cond("files", "contains", "x")]}]}, POOL)
