"""The human-input node (Dify's `human-input`): builds its form from the node's data with the
run's variables (content rendered, defaults and select options resolved) and pauses the run
on it. The engine records the pause and, once the form is answered or times out, the node's
result (`result_of_answer`) without running this again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.workflow import events as ev
from schemas.workflow.forms import (
    FILE_INPUTS,
    TEXT_INPUTS,
    TIMEOUT_HANDLE,
    submitted_outputs,
)
from workers.workflow.nodes.base import HumanInputRequired, NodeCall, NodeError, NodeResult
from workflow_graph.variables import MISSING, VariablePool, to_text

ERROR_TYPE = "HumanInputNodeError"
SECONDS_PER_UNIT = {"hour": 3600, "day": 86400}
DEFAULT_TIMEOUT, DEFAULT_TIMEOUT_UNIT = 36, "hour"  # Dify's defaults


async def human_input(call: NodeCall) -> NodeResult:
    data = call.node.data
    unit = data.get("timeout_unit") or DEFAULT_TIMEOUT_UNIT
    timeout = data.get("timeout", DEFAULT_TIMEOUT)
    if unit not in SECONDS_PER_UNIT or not isinstance(timeout, int) or timeout <= 0:
        raise NodeError(f"Invalid timeout {timeout!r} {unit!r}: a positive number of hours "
                        "or days.", ERROR_TYPE)
    raise HumanInputRequired(build_form(call.node.id, call.node.title, data, call.pool),
                             timeout * SECONDS_PER_UNIT[unit])


def build_form(node_id: str, title: str, data: Mapping[str, Any],
               pool: VariablePool) -> dict[str, Any]:
    """The form as WorkflowRunPaused records it (schemas/workflow/forms.py reads it)."""
    inputs, defaults, options = [], {}, {}
    names: set[str] = set()
    for raw in data.get("inputs") or []:
        control = _control(raw)
        name = control["output_variable_name"]
        if name in names:
            raise NodeError(f"Duplicated output_variable_name '{name}' in inputs.", ERROR_TYPE)
        names.add(name)
        default = control.get("default")
        if default is not None:
            value = _resolve(default, pool, name)
            if value is not None:
                defaults[name] = value
        if control["type"] == "select":
            options[name] = _options(control.get("option_source") or {}, pool, name)
        inputs.append(control)
    actions = [_action(raw) for raw in data.get("user_actions") or []]
    if len({a["id"] for a in actions}) != len(actions):
        raise NodeError("Duplicated user action id.", ERROR_TYPE)
    return {"node_id": node_id, "node_title": title,
            "form_content": pool.render(str(data.get("form_content") or "")),
            "inputs": inputs, "user_actions": actions, "resolved_default_values": defaults,
            "options": options}


def result_of_answer(answer: ev.WorkflowHumanInputSubmitted | ev.WorkflowHumanInputTimedOut
                     ) -> NodeResult:
    """The node's result once its form is answered: the submitted values and the action,
    whose id is the branch taken; unanswered past its expiry, the `timeout` branch."""
    if isinstance(answer, ev.WorkflowHumanInputTimedOut):
        return NodeResult(outputs={"action_id": TIMEOUT_HANDLE, "__action_id": TIMEOUT_HANDLE},
                          handle=TIMEOUT_HANDLE)
    return NodeResult(outputs=submitted_outputs(answer.inputs, answer.action),
                      handle=answer.action, inputs={"submitted_by": answer.submitted_by})


def _control(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("output_variable_name"), str):
        raise NodeError("Each form input needs an output_variable_name.", ERROR_TYPE)
    kind = raw.get("type", "paragraph")
    if kind not in TEXT_INPUTS | FILE_INPUTS | {"select"}:
        raise NodeError(f"Unknown form input type {kind!r}.", ERROR_TYPE)
    control = {k: v for k, v in raw.items() if k != "placeholder"}
    control["type"] = "paragraph" if kind == "text_input" else kind
    # Dify's older DSL names a paragraph's default `placeholder`
    control["default"] = raw.get("default", raw.get("placeholder"))
    return control


def _resolve(default: Any, pool: VariablePool, name: str) -> str | None:
    if not isinstance(default, Mapping):
        raise NodeError(f"The default of input '{name}' must be an object.", ERROR_TYPE)
    if default.get("type") == "variable":
        value = pool.get(default.get("selector") or [])
        return None if value is MISSING else to_text(value)
    return str(default.get("value", ""))


def _options(source: Mapping[str, Any], pool: VariablePool, name: str) -> list[str]:
    if source.get("type") == "variable":
        value = pool.get(source.get("selector") or [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise NodeError(f"The options of input '{name}' must come from an array[string] "
                            "variable.", ERROR_TYPE)
        return list(value)
    return [str(v) for v in source.get("value") or []]


def _action(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not str(raw.get("id", "")).isidentifier() \
            or not raw["id"].isascii():
        raise NodeError(f"Invalid user action {raw!r}: an id of letters, digits and "
                        "underscores, not starting with a digit.", ERROR_TYPE)
    return {"id": raw["id"], "title": str(raw.get("title", raw["id"])),
            "button_style": raw.get("button_style", "default")}
