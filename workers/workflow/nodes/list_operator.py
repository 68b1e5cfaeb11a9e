"""The `list-operator` node, as Dify's (core/workflow/nodes/list_operator): on an array of
strings, numbers, booleans or files, in this order: filter_by (every condition in turn), extract_by
(the n-th item, from 1), order_by, limit. Outputs `result`, `first_record`, `last_record`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workflow_graph.files import is_file
from workflow_graph.variables import MISSING, VariablePool

_FILE_TEXT_KEYS = {"name": "filename", "type": "type", "extension": "extension",
                   "mime_type": "mime_type", "transfer_method": "transfer_method",
                   "url": "remote_url"}


async def run(call: NodeCall) -> NodeResult:
    data = call.node.data
    selector = list(data.get("variable") or [])
    value = call.pool.get(selector)
    if value is MISSING:
        raise NodeError(f"Variable not found for selector: {selector}")
    if not value:
        return NodeResult(outputs={"result": [], "first_record": None, "last_record": None},
                          inputs={"variable": []}, process_data={"variable": []})
    kind = _kind(value)
    if kind is None:
        raise NodeError(f"Variable {selector} is not an ArrayFileSegment, ArrayNumberSegment, "
                        "ArrayStringSegment or ArrayBooleanSegment")
    items = list(value)
    if _enabled(data, "filter_by"):
        for condition in data["filter_by"].get("conditions") or []:
            items = [item for item in items if _filter(kind, condition, call.pool)(item)]
    if _enabled(data, "extract_by"):
        items = [_extract(items, data["extract_by"], call.pool)]
    if _enabled(data, "order_by"):
        items = _order(kind, items, data["order_by"])
    if _enabled(data, "limit"):
        items = items[:int(data["limit"].get("size", -1))]
    return NodeResult(outputs={"result": items, "first_record": items[0] if items else None,
                               "last_record": items[-1] if items else None},
                      inputs={"variable": list(value)}, process_data={"variable": list(value)})


def _enabled(data: Mapping[str, Any], part: str) -> bool:
    config = data.get(part)
    return isinstance(config, Mapping) and bool(config.get("enabled"))


def _kind(value: Any) -> str | None:
    if not isinstance(value, list):
        return None
    if all(isinstance(v, str) for v in value):
        return "string"
    if all(isinstance(v, bool) for v in value):
        return "boolean"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return "number"
    if all(is_file(v) for v in value):
        return "file"
    return None


def _filter(kind: str, condition: Mapping[str, Any], pool: VariablePool
            ) -> Callable[[Any], bool]:
    operator = str(condition.get("comparison_operator") or "contains")
    expected = condition.get("value", "")
    if kind == "boolean":
        if not isinstance(expected, bool):
            raise NodeError(f"Invalid filter value: {expected}", "InvalidFilterValueError")
        return _chosen({"is": lambda x: x is expected, "is not": lambda x: x is not expected},
                       operator)
    if kind != "file":
        if not isinstance(expected, str):
            raise NodeError(f"Invalid filter value: {expected}", "InvalidFilterValueError")
        rendered = pool.render(expected)
        return _string_test(operator, rendered) if kind == "string" \
            else _number_test(operator, _number(rendered))
    key = str(condition.get("key") or "")
    if isinstance(expected, str):
        expected = pool.render(expected)
    if key in ("name", "extension", "mime_type", "url") and isinstance(expected, str):
        test = _string_test(operator, expected)
        return lambda file: test(_file_text(file, key))
    if key in ("type", "transfer_method") and isinstance(expected, (str, list)):
        test = _sequence_test(operator, expected)
        return lambda file: test(_file_text(file, key))
    if key == "size" and isinstance(expected, str):
        number_test = _number_test(operator, _number(expected))
        return lambda file: number_test(file.get("size") or 0)
    raise NodeError(f"Invalid key: {key}", "InvalidKeyError")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise NodeError(f"Invalid filter value: {text}", "InvalidFilterValueError") from None


def _string_test(operator: str, expected: str) -> Callable[[str], bool]:
    tests: dict[str, Callable[[str], bool]] = {
        "contains": lambda x: expected in x,
        "start with": lambda x: x.startswith(expected),
        "end with": lambda x: x.endswith(expected),
        "is": lambda x: x == expected,
        "in": lambda x: x in expected,
        "empty": lambda x: x == "",
        "not contains": lambda x: expected not in x,
        "is not": lambda x: x != expected,
        "not in": lambda x: x not in expected,
        "not empty": lambda x: x != "",
    }
    return _chosen(tests, operator)


def _sequence_test(operator: str, expected: Sequence[str] | str) -> Callable[[str], bool]:
    tests: dict[str, Callable[[str], bool]] = {
        "in": lambda x: x in expected,
        "not in": lambda x: x not in expected,
    }
    return _chosen(tests, operator)


def _number_test(operator: str, expected: float) -> Callable[[float], bool]:
    tests: dict[str, Callable[[float], bool]] = {
        "=": lambda x: x == expected,
        "≠": lambda x: x != expected,
        "<": lambda x: x < expected,
        "≤": lambda x: x <= expected,
        ">": lambda x: x > expected,
        "≥": lambda x: x >= expected,
    }
    return _chosen(tests, operator)


def _chosen(tests: Mapping[str, Callable[[Any], bool]], operator: str) -> Callable[[Any], bool]:
    if operator not in tests:
        raise NodeError(f"Invalid condition: {operator}", "InvalidConditionError")
    return tests[operator]


def _file_text(file: Mapping[str, Any], key: str) -> str:
    return str(file.get(_FILE_TEXT_KEYS[key]) or "")


def _extract(items: list[Any], config: Mapping[str, Any], pool: VariablePool) -> Any:
    serial = pool.render(str(config.get("serial") or "1"))
    try:
        index = int(serial)
    except ValueError:
        raise NodeError(f"Invalid serial index: {serial}", "InvalidKeyError") from None
    if index < 1:
        raise NodeError(f"Invalid serial index: must be >= 1, got {index}", "InvalidKeyError")
    if index > len(items):
        raise NodeError(f"Invalid serial index: must be <= {len(items)}, got {index}",
                        "InvalidKeyError")
    return items[index - 1]


def _order(kind: str, items: list[Any], config: Mapping[str, Any]) -> list[Any]:
    descending = config.get("value") == "desc"
    if kind != "file":
        return sorted(items, reverse=descending)
    key = str(config.get("key") or "")
    if key in _FILE_TEXT_KEYS:
        return sorted(items, key=lambda file: _file_text(file, key), reverse=descending)
    if key == "size":
        return sorted(items, key=lambda file: file.get("size") or 0, reverse=descending)
    raise NodeError(f"Invalid order key: {key}", "InvalidKeyError")
