"""The nodes whose result depends on the variable pool alone (start, end, answer, if-else):
what they record when they run, as Dify's nodes compute it. Nodes with I/O come later."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflow_graph.conditions import choose_branch
from workflow_graph.errors import WorkflowGraphError
from workflow_graph.graph import Node
from workflow_graph.scheduler import NodeSucceeded
from workflow_graph.variables import MISSING, VariablePool

PURE_NODE_TYPES = frozenset({"start", "end", "answer", "if-else"})


def run_pure_node(node: Node, pool: VariablePool, inputs: Mapping[str, Any]) -> NodeSucceeded:
    """The start node passes the run's inputs on; end collects its output selectors; answer
    renders its template; if-else names the branch (ConditionError fails the node)."""
    if node.type == "start":
        return NodeSucceeded(node.id, dict(inputs))
    if node.type == "end":
        outputs = {}
        for item in node.data.get("outputs") or []:
            value = pool.get(item.get("value_selector") or [])
            outputs[str(item.get("variable"))] = None if value is MISSING else value
        return NodeSucceeded(node.id, outputs)
    if node.type == "answer":
        return NodeSucceeded(node.id, {"answer": pool.render(str(node.data.get("answer", "")))})
    if node.type == "if-else":
        decision = choose_branch(node.data, pool)
        return NodeSucceeded(node.id, decision.outputs, decision.handle)
    raise WorkflowGraphError(f"node {node.id!r} ({node.type}) does I/O: not a pure node")
