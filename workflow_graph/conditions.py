"""If-else conditions, evaluated as Dify's `core/workflow/utils/condition/processor.py` and
if-else node do: every comparison operator, `and`/`or` with short-circuit, cases tried in
order (the first that passes names the branch), `false` when none does, and the pre-`cases`
form (`logical_operator` + `conditions` on the node) answering `true`/`false`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workflow_graph.errors import ConditionError
from workflow_graph.variables import MISSING, VariablePool

FALSE_BRANCH = "false"


@dataclass(frozen=True)
class BranchDecision:
    handle: str  # the edge source handle to follow: a case id, "true" or "false"
    result: bool

    @property
    def outputs(self) -> dict[str, Any]:
        return {"result": self.result, "selected_case_id": self.handle}


def choose_branch(node_data: Mapping[str, Any], pool: VariablePool) -> BranchDecision:
    """The branch an if-else node takes; ConditionError when a condition cannot be evaluated
    (a missing variable, a number compared to text…), which fails the node as in Dify."""
    cases = node_data.get("cases")
    if cases:
        for case in cases:
            if evaluate_group(case.get("conditions") or [], case.get("logical_operator", "and"),
                              pool):
                return BranchDecision(str(case.get("case_id") or case.get("id")), True)
        return BranchDecision(FALSE_BRANCH, False)
    passed = evaluate_group(node_data.get("conditions") or [],
                            node_data.get("logical_operator", "and"), pool)
    return BranchDecision("true" if passed else FALSE_BRANCH, passed)


def evaluate_group(conditions: Sequence[Mapping[str, Any]], logical_operator: str,
                   pool: VariablePool) -> bool:
    if logical_operator not in {"and", "or"}:
        raise ConditionError(f"unknown logical operator {logical_operator!r}")
    results = []
    for condition in conditions:
        result = _evaluate_condition(condition, pool)
        results.append(result)
        if (logical_operator == "and" and not result) or (logical_operator == "or" and result):
            return result
    return all(results) if logical_operator == "and" else any(results)


def _evaluate_condition(condition: Mapping[str, Any], pool: VariablePool) -> bool:
    selector = condition.get("variable_selector") or []
    operator = str(condition.get("comparison_operator", ""))
    actual = pool.get(selector)
    if actual is MISSING:
        raise ConditionError(f"Variable {list(selector)} not found")
    sub = condition.get("sub_variable_condition")
    if _is_file_list(actual) and operator in {"contains", "not contains", "all of"}:
        if not sub:
            raise ConditionError("Sub variable is required")
        return _evaluate_file_conditions(actual, sub.get("conditions") or [],
                                         sub.get("logical_operator", "and"))
    if operator in {"exists", "not exists"}:
        return compare(operator, actual, None)
    expected = condition.get("value")
    if isinstance(expected, str):
        expected = pool.render(expected)
    if _is_boolean(actual) and expected is not None:
        # Dify stores boolean comparands as text ("true", "1"); it converts them first.
        expected = ([_to_bool(v) for v in expected] if isinstance(expected, list)
                    else _to_bool(expected))
    return compare(operator, actual, expected)


def compare(operator: str, actual: Any, expected: Any) -> bool:
    """One comparison, Dify's semantics (including its refusals as ConditionError)."""
    if operator == "all of" and not isinstance(expected, list):
        raise ConditionError(f"Unsupported operator: {operator}")
    check = _OPERATORS.get(operator)
    if check is None:
        raise ConditionError(f"Unsupported operator: {operator}")
    try:
        return check(actual, expected)
    except (TypeError, ValueError) as error:
        raise ConditionError(f"{operator!r} cannot compare {actual!r} with {expected!r}: "
                             f"{error}") from error


def _text_or_array(actual: Any) -> None:
    if not isinstance(actual, (str, list)):
        raise ConditionError("Invalid actual value type: string or array")


def _text(actual: Any) -> None:
    if not isinstance(actual, str):
        raise ConditionError("Invalid actual value type: string")


def _contains(actual: Any, expected: Any) -> bool:
    if not actual:
        return False
    _text_or_array(actual)
    return expected in actual


def _not_contains(actual: Any, expected: Any) -> bool:
    if not actual:
        return True
    _text_or_array(actual)
    return expected not in actual


def _start_with(actual: Any, expected: Any) -> bool:
    if not actual:
        return False
    _text(actual)
    return bool(actual.startswith(expected))


def _end_with(actual: Any, expected: Any) -> bool:
    if not actual:
        return False
    _text(actual)
    return bool(actual.endswith(expected))


def _is(actual: Any, expected: Any) -> bool:
    if actual is None:
        return False
    if not isinstance(actual, (str, bool)):
        raise ConditionError("Invalid actual value type: string or boolean")
    return bool(actual == expected)


def _is_not(actual: Any, expected: Any) -> bool:
    if actual is None:
        return False
    if not isinstance(actual, (str, bool)):
        raise ConditionError("Invalid actual value type: string or boolean")
    return bool(actual != expected)


def _number_like(actual: Any, expected: Any, *, booleans: bool) -> Any:
    """The comparand cast to the actual value's type, as Dify does (`int("1.5")` fails)."""
    if not isinstance(actual, (int, float)):  # a bool is an int here, as in Dify
        raise ConditionError("Invalid actual value type: number"
                             + (" or boolean" if booleans else ""))
    if booleans and isinstance(actual, bool):
        return bool(expected)
    return int(expected) if isinstance(actual, int) else float(expected)


def _numeric(op: Callable[[Any, Any], bool], *, booleans: bool = False
             ) -> Callable[[Any, Any], bool]:
    def check(actual: Any, expected: Any) -> bool:
        if actual is None:
            return False
        return op(actual, _number_like(actual, expected, booleans=booleans))
    return check


def _in(actual: Any, expected: Any) -> bool:
    if not actual:
        return False
    if not isinstance(expected, list):
        raise ConditionError("Invalid expected value type: array")
    return actual in expected


def _not_in(actual: Any, expected: Any) -> bool:
    if not actual:
        return True
    if not isinstance(expected, list):
        raise ConditionError("Invalid expected value type: array")
    return actual not in expected


def _all_of(actual: Any, expected: Any) -> bool:
    if not actual:
        return False
    return all(item in actual for item in expected)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "contains": _contains,
    "not contains": _not_contains,
    "start with": _start_with,
    "end with": _end_with,
    "is": _is,
    "is not": _is_not,
    "empty": lambda actual, _: not actual,
    "not empty": lambda actual, _: bool(actual),
    "=": _numeric(lambda a, e: a == e, booleans=True),
    "≠": _numeric(lambda a, e: a != e, booleans=True),
    ">": _numeric(lambda a, e: a > e),
    "<": _numeric(lambda a, e: a < e),
    "≥": _numeric(lambda a, e: a >= e),
    "≤": _numeric(lambda a, e: a <= e),
    "null": lambda actual, _: actual is None,
    "not null": lambda actual, _: actual is not None,
    "in": _in,
    "not in": _not_in,
    "all of": _all_of,
    "exists": lambda actual, _: actual is not None,
    "not exists": lambda actual, _: actual is None,
}
COMPARISON_OPERATORS = frozenset(_OPERATORS)


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, bool) for v in value))


def _to_bool(value: Any) -> bool:
    if isinstance(value, int):
        return bool(value)
    if isinstance(value, str):
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError as error:
            raise ConditionError(f"{value!r} is not a boolean") from error
        if isinstance(loaded, (int, bool)):
            return bool(loaded)
    raise ConditionError(f"{value!r} is not a boolean")


def _is_file_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, Mapping) and "transfer_method" in v for v in value)


def _evaluate_file_conditions(files: list[Mapping[str, Any]],
                              conditions: Sequence[Mapping[str, Any]],
                              logical_operator: str) -> bool:
    """Conditions on the attributes of each file in a file list (type, extension, name…): a
    `not` operator must hold for every file, any other for one of them."""
    results = []
    for condition in conditions:
        key = str(condition.get("key", ""))
        operator = str(condition.get("comparison_operator", ""))
        expected = condition.get("value")
        values = [file.get(key) for file in files]
        if key == "extension":
            if not isinstance(expected, str):
                raise ConditionError("the expected extension must be text")
            expected = _dotted(expected)
            values = [_dotted(v) if isinstance(v, str) else v for v in values]
        each = [compare(operator, value, expected) for value in values]
        results.append(all(each) if "not" in operator else any(each))
    return all(results) if logical_operator == "and" else any(results)


def _dotted(extension: str) -> str:
    return extension if not extension or extension.startswith(".") else "." + extension
