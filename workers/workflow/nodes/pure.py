"""Executors of the nodes whose result depends on the variable pool alone (start, end,
answer, if-else): `workflow_graph.pure_nodes` computes them; a condition that cannot be
evaluated fails the node."""

from __future__ import annotations

from workers.workflow.nodes.base import Executor, NodeCall, NodeError, NodeResult
from workflow_graph.errors import ConditionError
from workflow_graph.pure_nodes import PURE_NODE_TYPES, run_pure_node


async def run_pure(call: NodeCall) -> NodeResult:
    try:
        done = run_pure_node(call.node, call.pool, call.run.inputs)
    except ConditionError as error:
        raise NodeError(str(error), "ConditionError") from error
    inputs = dict(call.run.inputs) if call.node.type == "start" else {}
    return NodeResult(outputs=done.outputs, handle=done.handle, inputs=inputs)


EXECUTORS: dict[str, Executor] = dict.fromkeys(PURE_NODE_TYPES, run_pure)
