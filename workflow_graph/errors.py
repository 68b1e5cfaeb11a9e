"""Typed errors of the workflow graph: each names what is wrong and where."""

from __future__ import annotations


class WorkflowGraphError(ValueError):
    """Bad input to the workflow graph package (a DSL file, a graph, a condition, a history)."""


class DslError(WorkflowGraphError):
    """The app DSL cannot be read: `path` points at the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class GraphError(WorkflowGraphError):
    """The graph cannot be saved as a draft."""


class UnknownNodeType(GraphError):
    def __init__(self, node_id: str, node_type: str) -> None:
        self.node_id = node_id
        self.node_type = node_type
        super().__init__(f"node {node_id!r} has an unknown type {node_type!r}")


class DuplicateNode(GraphError):
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        super().__init__(f"node id {node_id!r} is used twice")


class DanglingEdge(GraphError):
    def __init__(self, edge_id: str, missing_node_id: str, end: str) -> None:
        self.edge_id = edge_id
        self.missing_node_id = missing_node_id
        super().__init__(f"edge {edge_id!r} has a {end} {missing_node_id!r} that is not a node")


class GraphCycle(GraphError):
    def __init__(self, node_ids: list[str]) -> None:
        self.node_ids = node_ids
        loop = " -> ".join([*node_ids, node_ids[0]])
        super().__init__(f"the graph has a cycle outside a loop or iteration: {loop}")


class MissingStartNode(GraphError):
    def __init__(self, mode: str) -> None:
        super().__init__(f"a {mode} app needs a start node")


class ConditionError(WorkflowGraphError):
    """An if-else condition cannot be evaluated (the node fails, as in Dify)."""


class HistoryError(WorkflowGraphError):
    """A run's history contradicts itself or its graph (a result for a node never started)."""
