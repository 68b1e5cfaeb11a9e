"""Executors of the trigger nodes (`trigger-schedule`, `trigger-webhook`): the root of a
scheduled or webhook run, passing what triggered it on (`workflow_graph.triggers`)."""

from __future__ import annotations

from workers.workflow.nodes.base import Executor, NodeCall, NodeResult
from workflow_graph.triggers import TRIGGER_NODE_TYPES, trigger_outputs


async def run_trigger(call: NodeCall) -> NodeResult:
    return NodeResult(outputs=trigger_outputs(call.node.type, call.node.data, call.run.inputs),
                      inputs=dict(call.run.inputs))


EXECUTORS: dict[str, Executor] = dict.fromkeys(TRIGGER_NODE_TYPES, run_trigger)
