"""A run's inputs checked against its start node's variables, as Dify's app generators
check them (`_validate_inputs`: its messages, 400 invalid_param), before anything is
recorded. Workflow and advanced-chat apps share it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.errors import BadRequest

TEXT_TYPES = frozenset({"text-input", "select", "paragraph"})
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def start_variables(graph: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The start node's `variables` (the app's input form)."""
    for node in graph.get("nodes") or []:
        data = node.get("data") if isinstance(node, Mapping) else None
        if isinstance(data, Mapping) and data.get("type") == "start":
            return [v for v in data.get("variables") or [] if isinstance(v, Mapping)]
    return []


def validate_run_inputs(variables: Sequence[Mapping[str, Any]],
                        inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs the form declares (others are dropped), defaults filled in, numbers and
    checkboxes converted, NUL characters removed."""
    checked: dict[str, Any] = {}
    for variable in variables:
        name = str(variable.get("variable", ""))
        value = _checked(variable, name, inputs.get(name))
        checked[name] = value.replace("\x00", "") if isinstance(value, str) else value
    for variable in variables:
        name, kind = str(variable.get("variable", "")), variable.get("type")
        value = checked[name]
        stray_object = isinstance(value, dict) and kind not in {"file", "json_object"}
        stray_objects = isinstance(value, list) and kind != "file-list" \
            and any(isinstance(i, dict) for i in value)
        if stray_object or stray_objects:
            raise BadRequest(f"Invalid input type for {[name]}")
    return checked


def _checked(variable: Mapping[str, Any], name: str, value: Any) -> Any:
    kind = variable.get("type")
    if value is None:
        if variable.get("required"):
            raise BadRequest(f"{name} is required in input form")
        value = variable.get("default")
        if value is None:
            return None
    if kind in {"file", "file-list"} and not variable.get("required") and value == "":
        return None
    if kind in TEXT_TYPES and not isinstance(value, str):
        raise BadRequest(f"(type '{kind}') {name} in input form must be a string")
    max_length = variable.get("max_length")
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise BadRequest(f"{name} in input form must be a valid number")
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            raise BadRequest(f"{name} in input form must be a valid number") from None
    if kind == "select" and value not in (variable.get("options") or []):
        raise BadRequest(f"{name} in input form must be one of the following: "
                         f"{variable.get('options') or []}")
    if kind in {"text-input", "paragraph"} and max_length and len(value) > max_length:
        raise BadRequest(f"{name} in input form must be less than {max_length} characters")
    if kind == "file" and not isinstance(value, dict):
        raise BadRequest(f"{name} in input form must be a file")
    if kind == "file-list":
        if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
            raise BadRequest(f"{name} in input form must be a list of files")
        if max_length and len(value) > max_length:
            raise BadRequest(f"{name} in input form must be less than {max_length} files")
    if kind == "checkbox":
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
        if isinstance(value, int | float) and not isinstance(value, bool) and value in (0, 1):
            return value == 1
    if kind == "json_object" and value and not isinstance(value, dict):
        raise BadRequest(f"{name} in input form must be a dict")
    return value
