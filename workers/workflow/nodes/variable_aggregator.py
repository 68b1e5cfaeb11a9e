"""The `variable-aggregator` node (and `variable-assigner`, its name in older DSLs), as
Dify's: the first of its variables that has a value (the branch that ran) is `output`; with
advanced_settings groups, each group's is `{group_name: {"output": value}}`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from workers.workflow.nodes.base import NodeCall, NodeResult
from workflow_graph.variables import MISSING, VariablePool


async def run(call: NodeCall) -> NodeResult:
    data = call.node.data
    settings = data.get("advanced_settings")
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if isinstance(settings, Mapping) and settings.get("group_enabled"):
        for group in settings.get("groups") or []:
            found = _first(call.pool, group.get("variables") or [], inputs)
            if found is not MISSING:
                outputs[str(group.get("group_name"))] = {"output": found}
    else:
        found = _first(call.pool, data.get("variables") or [], inputs)
        if found is not MISSING:
            outputs["output"] = found
    return NodeResult(outputs=outputs, inputs=inputs)


def _first(pool: VariablePool, selectors: Sequence[Sequence[str]],
           inputs: dict[str, Any]) -> Any:
    """The first selector's value that is there (MISSING if none), noted in `inputs` under
    the selector without its node id, as Dify logs it."""
    for selector in selectors:
        value = pool.get(selector)
        if value is not MISSING:
            inputs[".".join(selector[1:])] = value
            return value
    return MISSING
