"""The code node: runs the node's python3 or javascript `main` in the code sandbox
(`call.services.sandbox`, adapters/sandbox/) on the values of its `variables` selectors,
then checks what `main` returned against the node's declared `outputs` with Dify's
CODE_MAX_* limits and error messages (api/core/workflow/nodes/code/code_node.py)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from adapters.sandbox.base import CODE_NODE_LANGUAGES, SandboxError, SandboxLimits
from config import Settings
from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workflow_graph.variables import MISSING, VariablePool


def selected_inputs(pool: VariablePool, variables: Any) -> dict[str, Any]:
    """The node's `variables` ([{variable, value_selector}]) as name → value (None when
    the selector has no value, as in Dify)."""
    inputs: dict[str, Any] = {}
    for variable in variables or []:
        value = pool.get(variable.get("value_selector") or [])
        inputs[variable["variable"]] = None if value is MISSING else value
    return inputs


def sandbox_limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits(timeout_seconds=settings.CODE_EXECUTION_TIMEOUT,
                         memory_mb=settings.CODE_MAX_MEMORY_MB,
                         max_processes=settings.CODE_MAX_PROCESSES)


class OutputValidationError(NodeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "OutputValidationError")


class _Checker:
    """Dify's `_transform_result`: the outputs as declared, each value checked."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def string(self, value: Any, name: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise OutputValidationError(f"Output variable `{name}` must be a string")
        limit = self.settings.CODE_MAX_STRING_LENGTH
        if len(value) > limit:
            raise OutputValidationError(f"The length of output variable `{name}` must be "
                                        f"less than {limit} characters")
        return value.replace("\x00", "")

    def number(self, value: Any, name: str) -> int | float | None:
        if value is None:
            return None
        if not isinstance(value, int | float):
            raise OutputValidationError(f"Output variable `{name}` must be a number")
        low, high = self.settings.CODE_MIN_NUMBER, self.settings.CODE_MAX_NUMBER
        if value > high or value < low:
            raise OutputValidationError(f"Output variable `{name}` is out of range, "
                                        f"it must be between {low} and {high}.")
        if isinstance(value, float):
            exponent = Decimal(str(value)).normalize().as_tuple().exponent
            precision = -exponent if isinstance(exponent, int) and exponent < 0 else 0
            if precision > self.settings.CODE_MAX_PRECISION:
                raise OutputValidationError(
                    f"Output variable `{name}` has too high precision, it must be less "
                    f"than {self.settings.CODE_MAX_PRECISION} digits.")
        return value

    def boolean(self, value: Any, name: str) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        raise OutputValidationError(f"Output variable `{name}` must be a boolean")

    def _depth(self, depth: int) -> None:
        if depth > self.settings.CODE_MAX_DEPTH:
            raise NodeError(f"Depth limit {self.settings.CODE_MAX_DEPTH} reached, object too "
                            "deep.", "DepthLimitError")

    def undeclared(self, result: Mapping[str, Any], prefix: str, depth: int) -> Any:
        """An object without declared children: every value checked by its own type."""
        self._depth(depth)
        for key, value in result.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                self.undeclared(value, name, depth + 1)
            elif isinstance(value, bool):
                continue
            elif isinstance(value, int | float):
                self.number(value, name)
            elif isinstance(value, str):
                self.string(value, name)
            elif isinstance(value, list):
                self._undeclared_array(value, name, prefix, key, depth)
            elif value is not None:
                raise OutputValidationError(f"Output {prefix}.{key} is not a valid type.")
        return result

    def _undeclared_array(self, values: list[Any], name: str, prefix: str, key: str,
                          depth: int) -> None:
        if not values or values[0] is None:
            return  # Dify types an array by its first element
        first = values[0]
        present = [value for value in values if value is not None]
        if isinstance(first, int | float) and all(isinstance(v, int | float) for v in present):
            for i, value in enumerate(values):
                self.number(value, f"{name}[{i}]")
        elif isinstance(first, str) and all(isinstance(v, str) for v in present):
            for i, value in enumerate(values):
                self.string(value, f"{name}[{i}]")
        elif (isinstance(first, dict) and all(isinstance(v, dict) for v in present)) or (
                isinstance(first, list) and all(isinstance(v, list) for v in present)):
            for i, value in enumerate(values):
                if isinstance(value, dict):
                    self.undeclared(value, f"{name}[{i}]", depth + 1)
        else:
            raise OutputValidationError(f"Output {prefix}.{key} is not a valid array. make "
                                        "sure all elements are of the same type.")

    def _array(self, value: Any, name: str, limit: int) -> list[Any] | None:
        if not isinstance(value, list):
            if value is None:
                return None
            raise OutputValidationError(f"Output {name} is not an array, got "
                                        f"{type(value)} instead.")
        if len(value) > limit:
            raise OutputValidationError(f"The length of output variable `{name}` must be "
                                        f"less than {limit} elements.")
        return value

    def declared(self, result: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = "",
                 depth: int = 1) -> dict[str, Any]:
        self._depth(depth)
        checked: dict[str, Any] = {}
        dot = "." if prefix else ""
        for key, declaration in schema.items():
            name = f"{prefix}{dot}{key}"
            if key not in result:
                raise OutputValidationError(f"Output {name} is missing.")
            checked[key] = self._value(result[key], declaration or {}, name,
                                       f"{prefix}.{key}", depth)
        if len(checked) != len(result):
            raise NodeError("Not all output parameters are validated.", "CodeNodeError")
        return checked

    def _value(self, value: Any, declaration: Mapping[str, Any], name: str,
               object_prefix: str, depth: int) -> Any:
        """`name` is the value's path in messages; an object's members are named after
        `object_prefix` (Dify's: `.user.name` for a member of a top-level object)."""
        kind = declaration.get("type")
        children = declaration.get("children")
        settings = self.settings
        if kind == "string":
            return self.string(value, name)
        if kind == "number":
            return self.number(value, name)
        if kind == "boolean":
            return self.boolean(value, name)
        if kind == "object":
            if value is None:
                return None
            if not isinstance(value, dict):
                raise OutputValidationError(f"Output {name} is not an object, got "
                                            f"{type(value)} instead.")
            if children is None:
                return self.undeclared(value, object_prefix, depth + 1)
            return self.declared(value, children, object_prefix, depth + 1)
        if kind == "array[string]":
            values = self._array(value, name, settings.CODE_MAX_STRING_ARRAY_LENGTH)
            return None if values is None else [
                self.string(v, f"{name}[{i}]") for i, v in enumerate(values)]
        if kind == "array[number]":
            values = self._array(value, name, settings.CODE_MAX_NUMBER_ARRAY_LENGTH)
            return None if values is None else [
                self.number(v, f"{name}[{i}]") for i, v in enumerate(values)]
        if kind == "array[boolean]":
            values = self._array(value, name, settings.CODE_MAX_NUMBER_ARRAY_LENGTH)
            return None if values is None else [
                self.boolean(v, f"{name}[{i}]") for i, v in enumerate(values)]
        if kind == "array[object]":
            values = self._array(value, name, settings.CODE_MAX_OBJECT_ARRAY_LENGTH)
            if values is None:
                return None
            for i, item in enumerate(values):
                if item is not None and not isinstance(item, dict):
                    raise OutputValidationError(f"Output {name}[{i}] is not an object, got "
                                                f"{type(item)} instead at index {i}.")
            return [None if item is None
                    else self.undeclared(item, f"{name}[{i}]", depth + 1) if children is None
                    else self.declared(item, children, f"{name}[{i}]", depth + 1)
                    for i, item in enumerate(values)]
        raise OutputValidationError(f"Output type {kind} is not supported.")


def check_outputs(result: Mapping[str, Any], schema: Mapping[str, Any] | None,
                  settings: Settings) -> dict[str, Any]:
    """What `main` returned, as the node declares it (`schema`: name → {type, children});
    raises NodeError (OutputValidationError, DepthLimitError, CodeNodeError) as Dify does."""
    checker = _Checker(settings)
    if schema is None:
        return dict(checker.undeclared(result, "", 1))
    return checker.declared(result, schema)


async def execute_code(call: NodeCall) -> NodeResult:
    data = call.node.data
    language = data.get("code_language", "python3")
    if language not in CODE_NODE_LANGUAGES:
        raise NodeError(f"Unsupported code language: {language}", "CodeNodeError")
    inputs = selected_inputs(call.pool, data.get("variables"))
    settings: Settings = call.services.settings
    try:
        result = await call.services.sandbox.run(language, data.get("code") or "", inputs,
                                                 sandbox_limits(settings))
    except SandboxError as error:
        raise NodeError(str(error), "CodeExecutionError") from None
    return NodeResult(outputs=check_outputs(result, data.get("outputs"), settings),
                      inputs=inputs)
