"""The loop node, as Dify's: its body runs up to `loop_count` times, with the loop variables
at `[loop_id, label]` (initialised from constants or selectors, changed by assigner nodes of
the body, whose writes to the loop's scope carry over to the next round) and the round at
`[loop_id, "index"]`. The break conditions (`break_conditions` + `logical_operator`, if-else's
operators) are checked before the first round (an error there means "not yet") and after each
round (an error there fails the node); a loop-end node that runs ends the loop after its
round. A failed body node fails the loop. Outputs: the loop variables and `loop_round`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workers.workflow.nodes.container import (
    ContainerEvents,
    Pass,
    merge_updates,
    root_of,
    run_pass,
    step_budget,
)
from workflow_graph.conditions import evaluate_group
from workflow_graph.errors import ConditionError
from workflow_graph.variables import MISSING, VariablePool


async def run_loop(call: NodeCall) -> NodeResult:
    node, data = call.node, call.node.data
    body = root_of(call)
    try:
        loop_count = int(data.get("loop_count") or 0)
    except (TypeError, ValueError) as error:
        raise NodeError(f"loop_count {data.get('loop_count')!r} is not a number",
                        "LoopNodeError") from error
    variables = _initial_variables(data.get("loop_variables") or [], call.pool)
    conditions = data.get("break_conditions") or []
    operator = str(data.get("logical_operator") or "and")
    budget = step_budget(call)
    events = ContainerEvents(call, "loop")
    inputs = {"loop_count": loop_count, **variables}
    updates: dict[str, dict[str, Any]] = {}  # writes to scopes outside the loop
    rounds = tokens = 0
    await events.started(inputs, {"loop_length": loop_count})
    try:
        done = bool(conditions) and _broken_before(conditions, operator,
                                                  call.pool.with_outputs(node.id, variables))
        while not done and rounds < loop_count:
            pool = _with_updates(call.pool, updates).with_outputs(
                node.id, {**variables, "index": rounds})
            result = await run_pass(call, body, pool, Pass(node.id, "loop", rounds), budget)
            rounds += 1
            tokens += result.total_tokens
            if result.error is not None:
                raise NodeError(result.error, "LoopNodeError")
            variables = {label: _value(result.pool, [node.id, label]) for label in variables}
            merge_updates(updates, {target: values for target, values in result.updates.items()
                                    if target != node.id})
            done = any(n.type == "loop-end" for n in result.finished) or (
                bool(conditions) and _evaluate(conditions, operator, result.pool))
            if not done and rounds < loop_count:
                await events.next(rounds, pre_loop_output={**variables, "loop_round": rounds})
    except NodeError as error:
        await events.completed(inputs=inputs, outputs=None, steps=rounds, total_tokens=tokens,
                               error=error.message)
        raise
    outputs = {**variables, "loop_round": rounds}
    await events.completed(inputs=inputs, outputs=outputs, steps=rounds, total_tokens=tokens)
    return NodeResult(outputs=outputs, inputs=inputs, updates=updates,
                      usage={"total_tokens": tokens} if tokens else None)


def _broken_before(conditions: Sequence[Mapping[str, Any]], operator: str,
                   pool: VariablePool) -> bool:
    """Before the first round a condition on a value the body has not made yet is false."""
    try:
        return evaluate_group(conditions, operator, pool)
    except ConditionError:
        return False


def _evaluate(conditions: Sequence[Mapping[str, Any]], operator: str,
              pool: VariablePool) -> bool:
    try:
        return evaluate_group(conditions, operator, pool)
    except ConditionError as error:
        raise NodeError(str(error), "LoopNodeError") from error


def _initial_variables(declared: Sequence[Mapping[str, Any]],
                       pool: VariablePool) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for item in declared:
        label = str(item.get("label") or "")
        value = item.get("value")
        if item.get("value_type") == "variable":
            found = pool.get(value) if isinstance(value, list) else MISSING
            if found is MISSING:
                raise NodeError(f"Invalid value for loop variable {label}", "LoopNodeError")
            variables[label] = found
        elif item.get("value_type") == "constant":
            variables[label] = _constant(label, str(item.get("var_type") or "string"), value)
        else:
            raise NodeError(f"Invalid value type {item.get('value_type')!r} for loop variable "
                            f"{label}", "LoopNodeError")
    return variables


_JSON_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "number": (int, float), "integer": int, "float": (int, float), "boolean": bool,
    "object": dict,
}


def _constant(label: str, var_type: str, value: Any) -> Any:
    """A constant as Dify's loop reads it: arrays given as JSON text (empty: []), a number,
    boolean or object given as text decoded from JSON, anything else as it is."""
    if var_type.startswith("array"):
        if isinstance(value, list):
            return value
        if not (isinstance(value, str) and value):
            return []
        decoded = _json(label, value)
        if not isinstance(decoded, list):
            raise NodeError(f"Invalid value for loop variable {label}", "LoopNodeError")
        return decoded
    expected = _JSON_TYPES.get(var_type)
    if expected is None or not isinstance(value, str):
        return value
    decoded = _json(label, value)
    # JSON's true is no number (Python's bool is an int)
    if not isinstance(decoded, expected) or (isinstance(decoded, bool) and var_type != "boolean"):
        raise NodeError(f"Invalid value for loop variable {label}", "LoopNodeError")
    return decoded


def _json(label: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise NodeError(f"Invalid value for loop variable {label}", "LoopNodeError") from error


def _value(pool: VariablePool, selector: list[str]) -> Any:
    value = pool.get(selector)
    return None if value is MISSING else value


def _with_updates(pool: VariablePool, updates: Mapping[str, Mapping[str, Any]]) -> VariablePool:
    for target, values in updates.items():
        pool = pool.with_outputs(target, values)
    return pool

