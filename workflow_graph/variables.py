"""The variable pool of a run and `{{#node_id.var#}}` templates, resolved as Dify's
`VariablePool.get` / `convert_template` do.

A selector is `[node_id, name, *path]`; the node id may be a node's or one of the reserved
`sys` (system variables), `env` (environment variables) and `conversation` (conversation
variables). Longer selectors walk into object values (Dify reads file attributes that way)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

SYSTEM: Final = "sys"
ENVIRONMENT: Final = "env"
CONVERSATION: Final = "conversation"

# Dify's VARIABLE_PATTERN: a node id, then 1-10 dotted names.
TEMPLATE_VARIABLE = re.compile(
    r"\{\{#([a-zA-Z0-9_]{1,50}(?:\.[a-zA-Z_][a-zA-Z0-9_]{0,29}){1,10})#\}\}")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What `get` answers for a selector with no value (a stored None is a value)."""


def parse_selector(selector: str | Sequence[str]) -> tuple[str, ...]:
    """`"sys.query"` or `["sys", "query"]` → `("sys", "query")`."""
    parts = tuple(selector.split(".")) if isinstance(selector, str) else tuple(selector)
    return tuple(str(p) for p in parts)


@dataclass(frozen=True)
class VariablePool:
    """Values by node id then name. Immutable: `with_outputs` answers a new pool, so a state
    folded from a history is never changed by a later fold."""

    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def for_run(cls, *, system: Mapping[str, Any] | None = None,
                environment: Mapping[str, Any] | None = None,
                conversation: Mapping[str, Any] | None = None) -> VariablePool:
        return cls({SYSTEM: dict(system or {}), ENVIRONMENT: dict(environment or {}),
                    CONVERSATION: dict(conversation or {})})

    def with_outputs(self, node_id: str, outputs: Mapping[str, Any]) -> VariablePool:
        merged = {**self.values.get(node_id, {}), **outputs}
        return VariablePool({**self.values, node_id: merged})

    def get(self, selector: str | Sequence[str]) -> Any:
        """The value at the selector, or MISSING (fewer than two parts is never a variable)."""
        parts = parse_selector(selector)
        if len(parts) < 2:
            return MISSING
        scope = self.values.get(parts[0])
        if scope is None or parts[1] not in scope:
            return MISSING
        value = scope[parts[1]]
        for key in parts[2:]:
            if not isinstance(value, Mapping) or key not in value:
                return MISSING
            value = value[key]
        return value

    def render(self, template: str) -> str:
        """Dify's `convert_template(...).text`: each `{{#a.b#}}` becomes its value's text. As in
        Dify, a reference to nothing stays as its selector text (`a.b`), and a literal piece of
        text that is itself exactly a known selector is replaced too."""
        pieces: list[str] = []
        for part in TEMPLATE_VARIABLE.split(template):
            if not part:
                continue
            value = self.get(part.split(".")) if "." in part else MISSING
            pieces.append(part if value is MISSING else to_text(value))
        return "".join(pieces)


def to_text(value: Any) -> str:
    """A value as Dify's segments print it (`Segment.text`): None and an empty array as
    nothing, an object and an array of strings as JSON, any other array and a boolean as
    Python prints them (`[1, 2]`, `True`)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        if not value:
            return ""
        if all(isinstance(item, str) for item in value):
            return json.dumps(list(value), ensure_ascii=False)
        return str(list(value))
    return str(value)
