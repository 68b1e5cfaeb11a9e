"""A workflow graph (`graph {nodes, edges}` of Dify's DSL) and its validation when a draft is
saved: unknown node types, duplicate ids, dangling edges, cycles outside loop/iteration
containers and a missing start node are errors; tool and agent nodes are warnings (they need a
plugin Eddy does not have)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from workflow_graph.errors import (
    DanglingEdge,
    DslError,
    DuplicateNode,
    GraphCycle,
    MissingStartNode,
    UnknownNodeType,
)
from workflow_graph.triggers import TRIGGER_NODE_TYPES

NODE_TYPES = frozenset({
    "start", "end", "answer", "llm", "knowledge-retrieval", "question-classifier",
    "parameter-extractor", "if-else", "code", "template-transform", "http-request",
    "variable-aggregator", "variable-assigner", "assigner", "iteration", "iteration-start",
    "loop", "loop-start", "loop-end", "list-operator", "document-extractor", "human-input",
    "tool", "agent", *TRIGGER_NODE_TYPES,
})
PLUGIN_NODE_TYPES = frozenset({"tool", "agent"})
CONTAINER_NODE_TYPES = frozenset({"iteration", "loop"})
# The node a container's body starts from (DSLs before these types name `start_node_id` only).
BODY_START_TYPES = frozenset({"iteration-start", "loop-start"})
# Canvas notes are drawn on the graph but are not nodes (Dify drops them when it builds one).
NOTE_NODE_TYPE = "custom-note"
DEFAULT_SOURCE_HANDLE = "source"


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    title: str
    data: Mapping[str, Any]
    # The iteration or loop node this node runs inside; None at the top level.
    parent_id: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """A node's `retry_config` (Dify's error strategy "retry"): how many times a failed
    attempt is tried again, and the pause between attempts."""

    max_retries: int
    interval_seconds: float

    @classmethod
    def of(cls, node: Node) -> RetryPolicy:
        retry = node.data.get("retry_config") or {}
        if not retry.get("retry_enabled"):
            return cls(0, 0.0)
        return cls(int(retry.get("max_retries") or 0),
                   float(retry.get("retry_interval") or 0) / 1000)  # given in ms


@dataclass(frozen=True)
class Edge:
    id: str
    source: str
    target: str
    source_handle: str = DEFAULT_SOURCE_HANDLE


@dataclass(frozen=True)
class GraphWarning:
    """Saved anyway, but the node cannot run here yet."""

    node_id: str
    message: str


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    # The mappings as read, so an export writes back what was imported (positions, sizes…).
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # A container's body (see `body`) starts here instead of at the "start" node.
    root_id: str | None = None

    def node(self, node_id: str) -> Node:
        return self._by_id[node_id]

    @cached_property
    def _by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def top_level(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.parent_id is None)

    def incoming(self, node_id: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.target == node_id)

    def outgoing(self, node_id: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.source == node_id)

    def start_node(self) -> Node | None:
        if self.root_id is not None:
            return self._by_id.get(self.root_id)
        return next((n for n in self.top_level() if n.type == "start"), None)

    def body(self, container_id: str) -> Graph:
        """The body of an iteration or loop as a graph of its own: its nodes at the top level
        (so the scheduler schedules them), the edges between them, rooted at the container's
        `start_node_id` or else its iteration-start/loop-start node. The root is None when
        the body has neither (the container's executor fails it)."""
        nodes = tuple(replace(n, parent_id=None) for n in self.nodes
                      if n.parent_id == container_id)
        ids = {n.id for n in nodes}
        edges = tuple(e for e in self.edges if e.source in ids and e.target in ids)
        named = self.node(container_id).data.get("start_node_id")
        root = named if isinstance(named, str) and named in ids else next(
            (n.id for n in nodes if n.type in BODY_START_TYPES), None)
        return Graph(nodes=nodes, edges=edges, root_id=root)


def parse_graph(raw: Any, path: str = "workflow.graph") -> Graph:
    """Read `graph {nodes, edges}` into dataclasses; shape errors name the field."""
    if not isinstance(raw, Mapping):
        raise DslError(path, "must be a mapping with nodes and edges")
    raw_nodes = raw.get("nodes") or []
    raw_edges = raw.get("edges") or []
    if not isinstance(raw_nodes, list):
        raise DslError(f"{path}.nodes", "must be a list")
    if not isinstance(raw_edges, list):
        raise DslError(f"{path}.edges", "must be a list")
    nodes = tuple(
        node for i, item in enumerate(raw_nodes)
        if (node := _parse_node(item, f"{path}.nodes[{i}]")) is not None
    )
    edges = tuple(_parse_edge(item, f"{path}.edges[{i}]") for i, item in enumerate(raw_edges))
    return Graph(nodes=nodes, edges=edges, raw=raw)


def _parse_node(item: Any, path: str) -> Node | None:
    if not isinstance(item, Mapping):
        raise DslError(path, "must be a mapping")
    if item.get("type") == NOTE_NODE_TYPE:
        return None
    node_id = item.get("id")
    if not isinstance(node_id, str) or not node_id:
        raise DslError(f"{path}.id", "must be a non-empty string")
    data = item.get("data")
    if not isinstance(data, Mapping):
        raise DslError(f"{path}.data", "must be a mapping")
    node_type = data.get("type")
    if not isinstance(node_type, str):
        raise DslError(f"{path}.data.type", "must be a string")
    parent = item.get("parentId") or data.get("iteration_id") or data.get("loop_id")
    return Node(id=node_id, type=node_type, title=str(data.get("title") or ""), data=data,
                parent_id=parent if isinstance(parent, str) and parent else None)


def _parse_edge(item: Any, path: str) -> Edge:
    if not isinstance(item, Mapping):
        raise DslError(path, "must be a mapping")
    source, target = _endpoint(item, "source", path), _endpoint(item, "target", path)
    handle = item.get("sourceHandle") or DEFAULT_SOURCE_HANDLE
    return Edge(id=str(item.get("id") or f"{source}-{handle}-{target}"), source=source,
                target=target, source_handle=str(handle))


def _endpoint(item: Mapping[str, Any], end: str, path: str) -> str:
    value = item.get(end)
    if not isinstance(value, str) or not value:
        raise DslError(f"{path}.{end}", "must be a non-empty string")
    return value


def validate(graph: Graph, mode: str) -> list[GraphWarning]:
    """Check the graph as Dify does when a draft is saved; raise the first error, return the
    warnings (nodes that need a plugin)."""
    seen: set[str] = set()
    for node in graph.nodes:
        if node.id in seen:
            raise DuplicateNode(node.id)
        seen.add(node.id)
        if node.type not in NODE_TYPES:
            raise UnknownNodeType(node.id, node.type)
    for edge in graph.edges:
        if edge.source not in seen:
            raise DanglingEdge(edge.id, edge.source, "source")
        if edge.target not in seen:
            raise DanglingEdge(edge.id, edge.target, "target")
    _refuse_cycles(graph)
    # A workflow may start from triggers instead of a start node (Dify's trigger nodes are
    # the roots of a workflow app's runs; a chatflow always starts from its form).
    triggered = mode == "workflow" and any(n.type in TRIGGER_NODE_TYPES
                                           for n in graph.top_level())
    if mode in {"workflow", "advanced-chat"} and graph.start_node() is None and not triggered:
        raise MissingStartNode(mode)
    return [GraphWarning(n.id, f"{n.type} node {n.title or n.id!r} needs a plugin "
                          f"({_plugin_name(n)}) that is not installed")
            for n in graph.nodes if n.type in PLUGIN_NODE_TYPES]


def _plugin_name(node: Node) -> str:
    data = node.data
    for key in ("provider_id", "provider_name", "agent_strategy_provider_name", "plugin_id"):
        if isinstance(data.get(key), str) and data[key]:
            return str(data[key])
    return "unknown provider"


def _refuse_cycles(graph: Graph) -> None:
    """A loop is a container node, never a back edge: within one scope (the top level or one
    container's body) the edges must form a DAG."""
    parent = {n.id: n.parent_id for n in graph.nodes}
    successors: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for edge in graph.edges:
        if parent[edge.source] == parent[edge.target]:
            successors[edge.source].append(edge.target)
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in successors:
        if root in state:
            continue
        path: list[str] = [root]
        stack: list[Iterator[str]] = [iter(successors[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise GraphCycle(path[path.index(nxt):])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(successors[nxt]))


def parallel_depth(graph: Graph) -> int:
    """How deeply parallel branches nest at the top level (WORKFLOW_PARALLEL_DEPTH_LIMIT):
    a node sending one handle's edges to two or more nodes opens a level, a node two or
    more edges join closes one; the deepest level open along any path."""
    top = {n.id for n in graph.top_level()}
    edges = [e for e in graph.edges if e.source in top and e.target in top]
    incoming: dict[str, list[Edge]] = {n: [] for n in top}
    outgoing: dict[str, list[Edge]] = {n: [] for n in top}
    for edge in edges:
        incoming[edge.target].append(edge)
        outgoing[edge.source].append(edge)
    entry: dict[str, int] = {}
    exit_: dict[str, int] = {}
    waiting = {n: len(ins) for n, ins in incoming.items()}
    ready = [n for n, count in waiting.items() if count == 0]
    while ready:  # topological order (a cycle is refused when the draft is saved)
        node_id = ready.pop()
        ins = incoming[node_id]
        depth = max((exit_[e.source] for e in ins), default=0)
        entry[node_id] = max(0, depth - 1) if len(ins) > 1 else depth
        targets: dict[str, set[str]] = {}
        for edge in outgoing[node_id]:
            targets.setdefault(edge.source_handle, set()).add(edge.target)
        fans_out = any(len(t) > 1 for t in targets.values())
        exit_[node_id] = entry[node_id] + (1 if fans_out else 0)
        for edge in outgoing[node_id]:
            waiting[edge.target] -= 1
            if waiting[edge.target] == 0:
                ready.append(edge.target)
    return max(exit_.values(), default=0)
