"""The `assigner` node (Dify's variable assigner), version 1 (`write_mode`: over-write,
append, clear) and version 2 (`items`, each an operation: over-write, clear, append, extend,
set, +=, -=, *=, /=, remove-first, remove-last; a constant or another variable as input),
with Dify's checks of which operation and input fit which variable type.

It writes conversation variables (and a loop's variables, inside that loop): the new values
are the result's `updates` ({"conversation": {name: value}}), which the scheduler puts in the
pool and the conversation keeps. Items apply in order, each seeing the ones before it.

A variable's type is read from its value (Dify reads the declaration): an empty array counts
as `array[any]`, so any item may be appended to it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workflow_graph.files import is_file
from workflow_graph.variables import CONVERSATION, MISSING, VariablePool

NUMBER = "number"
ARRAY_TYPES = frozenset({"array[any]", "array[string]", "array[number]", "array[object]",
                         "array[file]", "array[boolean]"})
# Dify's EMPTY_VALUE_MAPPING: what `clear` leaves
_EMPTY: dict[str, Any] = {"string": "", NUMBER: 0, "boolean": False, "object": {}}
_ITEM_CHECKS: dict[str, type | tuple[type, ...]] = {
    "array[any]": (str, int, float, dict), "array[string]": str, "array[number]": (int, float),
    "array[object]": dict, "array[boolean]": bool,
}
_UPDATED_VARIABLES = "__updated_variables"


def value_type(value: Any) -> str:
    """Dify's SegmentType name of a value."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return "string"
    if is_file(value):
        return "file"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list) and value:
        for kind in ("boolean", NUMBER, "string", "file", "object"):
            if all(value_type(v) == kind for v in value):
                return f"array[{kind}]"
    return "array[any]"


class _Assignment:
    """The pool as the items so far left it, and what they changed."""

    def __init__(self, call: NodeCall) -> None:
        self.call = call
        self.pool: VariablePool = call.pool
        self.updated: dict[tuple[str, str], Any] = {}

    def target(self, selector: Sequence[str]) -> tuple[tuple[str, str], Any]:
        """The variable an item writes: a conversation variable or the enclosing loop's."""
        parts = tuple(str(p) for p in selector)
        value = self.pool.get(parts) if len(parts) == 2 and self._assignable(parts[0]) \
            else MISSING
        if value is MISSING:
            raise NodeError(f"Variable {list(parts)} not found", "VariableNotFoundError")
        return (parts[0], parts[1]), value

    def _assignable(self, scope: str) -> bool:
        if scope == CONVERSATION:
            return True
        return any(n.id == scope and n.type == "loop" for n in self.call.graph.nodes)

    def write(self, name: tuple[str, str], value: Any) -> None:
        self.pool = self.pool.with_outputs(name[0], {name[1]: value})
        self.updated[name] = value

    def result(self, inputs: Mapping[str, Any]) -> NodeResult:
        updates: dict[str, dict[str, Any]] = {}
        for (scope, name), value in self.updated.items():
            updates.setdefault(scope, {})[name] = value
        process_data: dict[str, Any] = {name: value for (_, name), value in self.updated.items()}
        process_data[_UPDATED_VARIABLES] = [
            {"name": name, "selector": [scope, name], "value_type": value_type(value),
             "new_value": value} for (scope, name), value in self.updated.items()]
        return NodeResult(inputs=inputs, process_data=process_data, updates=updates)


async def run(call: NodeCall) -> NodeResult:
    if str(call.node.data.get("version") or "1") == "2" or "items" in call.node.data:
        return _run_items(call)
    return _run_write_mode(call)


def _run_write_mode(call: NodeCall) -> NodeResult:
    """Version 1: one variable, one write mode, another variable as input."""
    data = call.node.data
    assignment = _Assignment(call)
    try:
        name, current = assignment.target(data.get("assigned_variable_selector") or [])
    except NodeError:
        raise NodeError("assigned variable not found", "VariableOperatorNodeError") from None
    mode = data.get("write_mode")
    if mode == "clear":
        kind = value_type(current)
        if kind not in ("string", NUMBER, "object") and kind not in ARRAY_TYPES:
            raise NodeError(f"unsupported variable type: {kind}", "VariableOperatorNodeError")
        income = [] if kind in ARRAY_TYPES else _EMPTY[kind]
        assignment.write(name, income)
        return assignment.result({"value": income})
    if mode not in ("over-write", "append"):
        raise NodeError(f"unsupported write mode: {mode}", "VariableOperatorNodeError")
    income = call.pool.get(data.get("input_variable_selector") or [])
    if income is MISSING:
        raise NodeError("input value not found", "VariableOperatorNodeError")
    if mode == "append":
        if not isinstance(current, list):
            raise NodeError(f"Operation append is not supported for type {value_type(current)}",
                            "OperationNotSupportedError")
        assignment.write(name, [*current, income])
    else:
        assignment.write(name, income)
    return assignment.result({"value": income})


def _run_items(call: NodeCall) -> NodeResult:
    """Version 2: each item an operation on a variable, validated as Dify does."""
    assignment = _Assignment(call)
    for item in call.node.data.get("items") or []:
        name, current = assignment.target(item.get("variable_selector") or [])
        kind = value_type(current)
        operation = str(item.get("operation") or "")
        input_type = str(item.get("input_type") or "")
        value = item.get("value")
        if not _operation_supported(kind, operation):
            raise NodeError(f"Operation {operation} is not supported for type {kind}",
                            "OperationNotSupportedError")
        if input_type == "variable" and operation in ("set", "+=", "-=", "*=", "/="):
            raise NodeError(f"Input type {input_type} is not supported for operation "
                            f"{operation}", "InputTypeNotSupportedError")
        if input_type == "constant" and not _constant_supported(kind, operation):
            raise NodeError(f"Input type {input_type} is not supported for operation "
                            f"{operation}", "InputTypeNotSupportedError")
        if input_type == "variable" and value is not None and operation not in (
                "clear", "remove-first", "remove-last"):
            value = assignment.pool.get(value)
            if value is MISSING:
                raise NodeError(f"Variable {item.get('value')} not found",
                                "VariableNotFoundError")
            if value is None:  # Dify skips an input that holds nothing
                continue
        if operation == "set" and kind == "object" and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise NodeError(f"Invalid input value {value}", "InvalidInputValueError") \
                    from None
        if not _value_valid(kind, operation, value):
            raise NodeError(f"Invalid input value {value}", "InvalidInputValueError")
        assignment.write(name, _apply(kind, operation, current, value))
    return assignment.result(dict(call.node.data))


def _operation_supported(kind: str, operation: str) -> bool:
    match operation:
        case "over-write" | "clear":
            return True
        case "set":
            return kind in ("object", "string", NUMBER, "boolean")
        case "+=" | "-=" | "*=" | "/=":
            return kind == NUMBER
        case "append" | "extend" | "remove-first" | "remove-last":
            return kind in ARRAY_TYPES
    return False


def _constant_supported(kind: str, operation: str) -> bool:
    if kind in ("string", "object", "boolean"):
        return operation in ("over-write", "set")
    if kind == NUMBER:
        return operation in ("over-write", "set", "+=", "-=", "*=", "/=")
    return False


def _value_valid(kind: str, operation: str, value: Any) -> bool:
    if operation in ("clear", "remove-first", "remove-last"):
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not (operation == "/=" and value == 0)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    item_type = _ITEM_CHECKS.get(kind)
    if item_type is None:
        return False
    if operation == "append":
        return isinstance(value, item_type)
    if operation in ("extend", "over-write"):
        return isinstance(value, list) and all(isinstance(v, item_type) for v in value)
    return False


def _apply(kind: str, operation: str, current: Any, value: Any) -> Any:
    match operation:
        case "over-write" | "set":
            return value
        case "clear":
            return [] if kind in ARRAY_TYPES else _EMPTY.get(kind)
        case "append":
            return [*current, value]
        case "extend":
            return [*current, *value]
        case "+=":
            return current + value
        case "-=":
            return current - value
        case "*=":
            return current * value
        case "/=":
            return current / value
        case "remove-first":
            return current[1:]
        case "remove-last":
            return current[:-1]
    raise NodeError(f"Operation {operation} is not supported for type {kind}",
                    "OperationNotSupportedError")
