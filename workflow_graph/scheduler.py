"""The scheduler core: a run's recorded history folded into its state (Temporal-style).

A run is an aggregate whose facts are its history: the run started with its inputs, a node
started, a node succeeded (its outputs and the branch handle it took), a node failed. `fold`
is a pure function of the graph and that history, so any member that takes a run over after
another died computes the same state and starts exactly `state.to_start`: the nodes in flight
when the history was cut, then the newly ready ones; a finished node is never among them.

Readiness follows Dify's graph engine (edge states taken / skipped / unknown): a branch node
(if-else, question-classifier, human-input, or any node whose error strategy is fail-branch)
takes the out-edges whose source handle is the one it chose and skips the others; any other
node takes all its out-edges; a node whose in-edges are all skipped is skipped,
and so are its out-edges, recursively; a node is ready once none of its in-edges is unknown
and at least one is taken, which is the join (parallel branches meet there and it waits for
all of them). Only top-level nodes are scheduled here; an iteration or loop container is one
node whose body its own executor runs, folding the body (`Graph.body`) the same way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from workflow_graph.errors import HistoryError
from workflow_graph.graph import DEFAULT_SOURCE_HANDLE, Edge, Graph, Node
from workflow_graph.variables import VariablePool

FAIL_BRANCH_HANDLE = "fail-branch"
# Error strategies under which a failed node's run goes on (Dify shows it as "exception").
EXCEPTION_STRATEGIES = frozenset({"fail-branch", "default-value"})
# Nodes that choose among their out-edges by handle; the others take every out-edge.
BRANCH_NODE_TYPES = frozenset({"if-else", "question-classifier", "human-input"})


@dataclass(frozen=True)
class RunStarted:
    inputs: Mapping[str, Any] = field(default_factory=dict)
    system: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    conversation: Mapping[str, Any] = field(default_factory=dict)
    at: float = 0.0  # seconds since the epoch, for WORKFLOW_MAX_EXECUTION_TIME


@dataclass(frozen=True)
class NodeStarted:
    node_id: str


@dataclass(frozen=True)
class NodeSucceeded:
    node_id: str
    outputs: Mapping[str, Any] = field(default_factory=dict)
    handle: str = DEFAULT_SOURCE_HANDLE  # the out-edges a branch node follows
    # variables of other scopes the node wrote (variable-assigner: {"conversation": {...}})
    updates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeFailed:
    node_id: str
    error: str
    error_type: str = "NodeError"


Fact = RunStarted | NodeStarted | NodeSucceeded | NodeFailed


@dataclass(frozen=True)
class Limits:
    """Dify's limits, same names and defaults."""

    max_execution_steps: int = 500  # WORKFLOW_MAX_EXECUTION_STEPS
    max_execution_time: float = 1200.0  # WORKFLOW_MAX_EXECUTION_TIME, seconds


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class RunState:
    status: RunStatus
    inputs: Mapping[str, Any]  # the run's inputs, which the start node passes on
    pool: VariablePool
    finished: tuple[str, ...]  # in the order their results were recorded
    in_flight: tuple[str, ...]  # started, no result recorded (a dead member's work)
    ready: tuple[str, ...]  # not started, all their in-edges decided, one of them taken
    skipped: frozenset[str]
    steps: int  # nodes started, counted against max_execution_steps
    outputs: Mapping[str, Any] = field(default_factory=dict)
    answer: str = ""
    error: str | None = None

    @property
    def to_start(self) -> tuple[str, ...]:
        """What the member holding the run starts now: the interrupted nodes again (their
        result was never recorded), then the newly ready ones."""
        return (*self.in_flight, *self.ready) if self.status is RunStatus.RUNNING else ()


def fold(graph: Graph, history: Sequence[Fact], limits: Limits = Limits(),
         now: float | None = None, pool: VariablePool | None = None) -> RunState:
    """The run's state after its history. Facts repeated by an at-least-once delivery are
    applied once; a fact about a node the graph does not schedule is a HistoryError.
    `pool` is where the values start when the graph is a container's body (`Graph.body`):
    the run's values so far and the container's own (item, index, loop variables); a run's
    graph starts from the variables of its RunStarted."""
    if not history or not isinstance(history[0], RunStarted):
        raise HistoryError("a run's history begins with RunStarted")
    begun = history[0]
    if pool is None:
        pool = VariablePool.for_run(system=begun.system, environment=begun.environment,
                                    conversation=begun.conversation)
    scheduled = {n.id for n in graph.top_level()}
    started: list[str] = []
    handles: dict[str, str] = {}  # finished node → the handle it took
    finished: list[str] = []
    error: str | None = None
    for fact in history[1:]:
        if isinstance(fact, RunStarted):
            raise HistoryError("a run starts once")
        if fact.node_id not in scheduled:
            raise HistoryError(f"node {fact.node_id!r} is not a top-level node of the graph")
        if isinstance(fact, NodeStarted):
            if fact.node_id not in started:
                started.append(fact.node_id)
            continue
        if fact.node_id not in started:
            raise HistoryError(f"a result for node {fact.node_id!r}, which never started")
        if fact.node_id in handles:
            continue
        if isinstance(fact, NodeSucceeded):
            outcome: tuple[Mapping[str, Any], str] | None = (fact.outputs, fact.handle)
            for scope, values in fact.updates.items():
                pool = pool.with_outputs(scope, values)
        else:
            outcome = _outcome_of_failure(graph, fact)
            if outcome is None and error is None:
                error = f"node {fact.node_id!r} failed: {fact.error}"
        if outcome is not None:
            pool = pool.with_outputs(fact.node_id, outcome[0])
            handles[fact.node_id] = outcome[1]
            finished.append(fact.node_id)
        else:
            handles[fact.node_id] = ""  # failed for good: no out-edge is taken

    skipped, ready = _frontier(graph, started, handles)
    in_flight = tuple(n for n in started if n not in handles)
    steps = len(started)
    if error is None and now is not None and now - begun.at > limits.max_execution_time:
        error = f"Max execution time {limits.max_execution_time:g}s reached."
    if error is None and (steps > limits.max_execution_steps
                          or (ready and steps >= limits.max_execution_steps)):
        error = f"Max steps {limits.max_execution_steps} reached."
    state = RunState(status=RunStatus.RUNNING, inputs=begun.inputs, pool=pool,
                     finished=tuple(finished), in_flight=in_flight, ready=tuple(ready),
                     skipped=frozenset(skipped), steps=steps)
    if error is not None:
        return replace(state, status=RunStatus.FAILED, ready=(), error=error)
    if ready or in_flight:
        return state
    outputs: dict[str, Any] = {}
    for node_id in finished:
        if graph.node(node_id).type == "end":
            outputs.update(pool.values.get(node_id, {}))
    answer = "".join(str(pool.values[n].get("answer", "")) for n in finished
                     if graph.node(n).type == "answer")
    return replace(state, status=RunStatus.SUCCEEDED, outputs=outputs, answer=answer)


def is_branch(node: Node) -> bool:
    return node.type in BRANCH_NODE_TYPES or node.data.get("error_strategy") == "fail-branch"


def _outcome_of_failure(graph: Graph, fact: NodeFailed
                        ) -> tuple[Mapping[str, Any], str] | None:
    """A node's error strategy decides whether its failure ends the run (None) or the run goes
    on: `fail-branch` follows the node's fail-branch edges with the error as outputs,
    `default-value` follows its normal edges with the configured default outputs."""
    data = graph.node(fact.node_id).data
    error_outputs = {"error_message": fact.error, "error_type": fact.error_type}
    strategy = data.get("error_strategy")
    if strategy == "fail-branch":
        return error_outputs, FAIL_BRANCH_HANDLE
    if strategy == "default-value":
        defaults = {item["key"]: item.get("value") for item in data.get("default_value") or []
                    if isinstance(item, Mapping) and "key" in item}
        return {**defaults, **error_outputs}, DEFAULT_SOURCE_HANDLE
    return None


def _frontier(graph: Graph, started: Iterable[str], handles: Mapping[str, str]
              ) -> tuple[set[str], list[str]]:
    """Skipped nodes and ready nodes (in graph order) from the edges' states."""
    top = {n.id for n in graph.top_level()}
    edges = [e for e in graph.edges if e.source in top and e.target in top]
    incoming: dict[str, list[Edge]] = {n: [] for n in top}
    for edge in edges:
        incoming[edge.target].append(edge)
    taken: set[str] = set()
    skipped_edges: set[str] = set()
    for edge in edges:
        handle = handles.get(edge.source)
        if handle is None:
            continue
        follows = handle != "" and (edge.source_handle == handle
                                    or not is_branch(graph.node(edge.source)))
        (taken if follows else skipped_edges).add(edge.id)
    # Top-level nodes with no in-edge other than the start node never run (Dify marks the
    # branches of inactive roots skipped), so nothing downstream waits for them.
    start = graph.start_node()
    skipped = {n for n, ins in incoming.items() if not ins and (start is None or n != start.id)}
    skipped_edges.update(e.id for e in edges if e.source in skipped)
    changed = True
    while changed:  # a skipped node skips its out-edges, which may skip more nodes
        changed = False
        for node_id, ins in incoming.items():
            if node_id in skipped or not ins or any(e.id not in skipped_edges for e in ins):
                continue
            skipped.add(node_id)
            changed = True
            skipped_edges.update(e.id for e in edges if e.source == node_id)
    started_set = set(started)
    ready = []
    for node in graph.top_level():
        if node.id in started_set or node.id in skipped:
            continue
        ins = incoming[node.id]
        if not ins:
            ready.append(node.id)  # the start node: the others without in-edges are skipped
        elif all(e.id in taken or e.id in skipped_edges for e in ins) and any(
                e.id in taken for e in ins):
            ready.append(node.id)
    return skipped, ready
