"""What iteration and loop share: one pass over a container's body, and the container's SSE
events.

A pass folds the body (`Graph.body`) with the scheduler's readiness rules, exactly as the
engine folds a run: the ready nodes start concurrently (parallel branches), each result is
folded before anything that depends on it starts, a branch node chooses its edges, error
strategies (fail-branch, default-value) apply. Body nodes run through the same executor
registry as top-level ones, in a scope of their own (`{outer scope}/{container}[{index}]`),
so their idempotency keys differ per index and their events carry the container and index
as Dify streams them (`iteration_id`/`loop_id` in node_started and node_finished, the index
in node_finished's execution_metadata). The start node of a body (iteration-start,
loop-start) runs but is not streamed, as in Dify.

Every body node started takes a step of the run's budget (WORKFLOW_MAX_EXECUTION_STEPS);
a stop cancels the task running the container, which cancels the body's nodes. With a
journal (`NodeCall.journal`), each body fact is recorded before anything depending on it
starts, and a pass begins from what is recorded for its scope: after a takeover finished body
nodes are replayed from their facts, not run again (loop variables included, since they are
folded from the recorded assigner writes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.workflow.naming import node_execution_id, node_idempotency_key
from schemas.workflow.stream import node_fields, node_finished_fields
from workers.workflow.nodes.base import (
    BodyJournal,
    Emit,
    HumanInputRequired,
    NodeCall,
    NodeError,
    NodeResult,
    StepBudget,
    StepLimitReached,
    unsupported,
)
from workflow_graph.graph import BODY_START_TYPES, Graph, Node, RetryPolicy
from workflow_graph.scheduler import (
    EXCEPTION_STRATEGIES,
    Fact,
    Limits,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    RunStarted,
    RunState,
    RunStatus,
    fold,
)
from workflow_graph.variables import VariablePool


@dataclass(frozen=True)
class Pass:
    """Which pass of which container a body runs in."""

    container_id: str
    kind: str  # "iteration" | "loop": names the event fields (iteration_id, loop_index…)
    index: int


@dataclass(frozen=True)
class PassResult:
    pool: VariablePool  # the body's values after the pass (outputs, updated loop variables)
    finished: tuple[Node, ...]  # body nodes that ran to a result, in order
    error: str | None  # why the pass failed (a body node failed with no error strategy)
    # writes of body nodes to scopes outside the body (conversation variables, the loop's
    # own variables, an outer loop's): the container applies or passes them on
    updates: Mapping[str, Mapping[str, Any]]
    total_tokens: int


def step_budget(call: NodeCall) -> StepBudget:
    """The run's budget the engine passed, or one of the configured size (a container run
    on its own: the draft's single-node run)."""
    return call.steps or StepBudget(call.services.settings.WORKFLOW_MAX_EXECUTION_STEPS)


async def run_pass(call: NodeCall, body: Graph, pool: VariablePool, at: Pass,
                   budget: StepBudget) -> PassResult:
    """Run the body once from its root with `pool` (the run's values and the container's
    own); StepLimitReached and cancellation propagate, a failed body node is the result's
    error."""
    scope = f"{call.scope}/{at.container_id}[{at.index}]"
    journal = call.journal
    # The budget decides the steps; fold's own count (this pass only) stays under it.
    limits = Limits(max_execution_steps=budget.limit)
    history: list[Fact] = [RunStarted(), *(journal.recorded(scope) if journal else ())]
    if journal and fold(body, history, limits, pool=pool).status is RunStatus.FAILED:
        # The container runs again after a failed pass (its error strategy retries it):
        # the passes that succeeded are replayed, the failed one runs anew.
        await journal.forget(scope)
        history = [RunStarted()]
    running: dict[asyncio.Task[tuple[Fact, int]], str] = {}
    tokens = 0
    try:
        while (state := fold(body, history, limits, pool=pool)).status is RunStatus.RUNNING:
            for node_id in state.to_start:
                if node_id in running.values():
                    continue
                if node_id in state.ready:
                    index = budget.take()
                    await _record(journal, scope, NodeStarted(node_id), history)
                else:  # left in flight by a member that died: its start was counted
                    index = budget.used
                task = asyncio.create_task(_execute(
                    call, body, body.node(node_id), state, scope, at, index, budget))
                running[task] = node_id
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                del running[task]
                fact, used = task.result()
                # recorded before anything that depends on it starts
                await _record(journal, scope, fact, history)
                tokens += used
    finally:
        for task in running:  # a failed pass or a stop: the other branches stop too
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    body_ids = {n.id for n in body.nodes}
    updates: dict[str, dict[str, Any]] = {}
    for fact in history:
        if isinstance(fact, NodeSucceeded):
            merge_updates(updates, {target: values for target, values in fact.updates.items()
                                    if target not in body_ids})
    return PassResult(pool=state.pool, finished=tuple(body.node(n) for n in state.finished),
                      error=state.error, updates=updates, total_tokens=tokens)


async def _record(journal: BodyJournal | None, scope: str, fact: Fact,
                  history: list[Fact]) -> None:
    if journal is not None:
        await journal.record(scope, fact)
    history.append(fact)


async def _execute(call: NodeCall, body: Graph, node: Node, state: RunState, scope: str,
                   at: Pass, index: int, budget: StepBudget) -> tuple[Fact, int]:
    """One body node: its events, its executor with retries as configured, its fact."""
    started_at = time.time()
    predecessor = next((e.source for e in body.incoming(node.id) if e.source in state.finished),
                       None)
    event = {**node_fields(node_id=node.id, node_type=node.type, title=node.title,
                           execution_id=node_execution_id(call.run.run_id, node.id, scope),
                           index=index, predecessor=predecessor, created_at=int(started_at)),
             f"{at.kind}_id": at.container_id}
    streamed = node.type not in BODY_START_TYPES
    if streamed:
        await call.emit("node_started", {**event, "inputs": None, "extras": {}})
    executor = call.executors.get(node.type)
    if executor is None:
        return await _failed(call, node, event, started_at, unsupported(node), at, streamed), 0
    inner = replace(call, node=node, pool=state.pool, scope=scope, attempt=0, steps=budget,
                    idempotency_key=node_idempotency_key(call.run.run_id, node.id, scope),
                    emit=_without_text(call.emit))
    retry = RetryPolicy.of(node)
    while True:
        try:
            result = await executor(inner)
            break
        except StepLimitReached:
            raise
        except HumanInputRequired:
            # A paused run holds no worker; a body's pass cannot be cut and resumed.
            error = NodeError(f"{node.type} cannot wait for human input inside {at.kind} "
                              f"{at.container_id}", "HumanInputNotSupported")
            return await _failed(call, node, event, started_at, error, at, streamed), 0
        except NodeError as error:
            if inner.attempt >= retry.max_retries:
                return await _failed(call, node, event, started_at, error, at, streamed), 0
            if streamed:
                await call.emit("node_retry", {  # the spec's retry_index is zero-based
                    **event, "status": "retry", "error": error.message,
                    "retry_index": inner.attempt, "inputs": None, "outputs": None,
                    "process_data": None, "elapsed_time": time.time() - started_at,
                    "finished_at": int(time.time()), "execution_metadata": _position(at),
                    "files": []})
            await asyncio.sleep(retry.interval_seconds)
            inner = replace(inner, attempt=inner.attempt + 1)
    if streamed:
        await call.emit("node_finished", _finished(event, at, node_finished_fields(
            status="succeeded", inputs=result.inputs, process_data=result.process_data,
            outputs=result.outputs, error=None, elapsed_time=time.time() - started_at,
            usage=result.usage, finished_at=int(time.time()))))
    tokens = int((result.usage or {}).get("total_tokens") or 0)
    return NodeSucceeded(node.id, result.outputs, result.handle, result.updates), tokens


async def _failed(call: NodeCall, node: Node, event: Mapping[str, Any], started_at: float,
                  error: NodeError, at: Pass, streamed: bool) -> NodeFailed:
    if streamed:
        handled = node.data.get("error_strategy") in EXCEPTION_STRATEGIES
        await call.emit("node_finished", _finished(event, at, node_finished_fields(
            status="exception" if handled else "failed", inputs={}, process_data={},
            outputs=None, error=error.message, elapsed_time=time.time() - started_at,
            usage=None, finished_at=int(time.time()))))
    return NodeFailed(node.id, error.message, error.error_type)


def _finished(event: Mapping[str, Any], at: Pass,
              fields: Mapping[str, Any]) -> dict[str, Any]:
    """node_finished of a body node: its execution_metadata names the container and index,
    as Dify's does."""
    return {**event, **fields,
            "execution_metadata": {**(fields["execution_metadata"] or {}), **_position(at)}}


def _position(at: Pass) -> dict[str, Any]:
    return {f"{at.kind}_id": at.container_id, f"{at.kind}_index": at.index}


def _without_text(emit: Emit) -> Emit:
    """A body node's text chunks are not the run's text (the run answers with the
    container's output, as Dify's does); its other events pass."""
    async def forward(name: str, data: Mapping[str, Any]) -> None:
        if name != "text_chunk":
            await emit(name, data)
    return forward


async def run_body_start(call: NodeCall) -> NodeResult:
    """iteration-start, loop-start and loop-end: markers of the body (a loop-end that runs
    ends the loop after the pass; the loop executor sees it among the finished nodes)."""
    return NodeResult()


@dataclass
class ContainerEvents:
    """The container's own SSE events, as Dify streams them (`iteration_started`,
    `iteration_next`, `iteration_completed`; `loop_*` alike). `id` is the container's
    execution id, as in its node_started."""

    call: NodeCall
    kind: str
    started_at: float = field(default_factory=time.time)

    def _event(self) -> dict[str, Any]:
        node = self.call.node
        execution_id = node_execution_id(self.call.run.run_id, node.id, self.call.scope)
        return {"id": str(execution_id), "node_id": node.id, "node_type": node.type,
                "title": node.title, "extras": {}}

    async def started(self, inputs: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        await self.call.emit(f"{self.kind}_started", {
            **self._event(), "created_at": int(self.started_at), "inputs": dict(inputs),
            "metadata": dict(metadata)})

    async def next(self, index: int, **extra: Any) -> None:
        await self.call.emit(f"{self.kind}_next", {
            **self._event(), "index": index, "created_at": int(time.time()), **extra})

    async def completed(self, *, inputs: Mapping[str, Any], outputs: Mapping[str, Any] | None,
                        steps: int, total_tokens: int, error: str | None = None) -> None:
        await self.call.emit(f"{self.kind}_completed", {
            **self._event(), "created_at": int(self.started_at), "inputs": dict(inputs),
            "outputs": None if outputs is None else dict(outputs),
            "status": "failed" if error else "succeeded", "error": error,
            "elapsed_time": time.time() - self.started_at, "total_tokens": total_tokens,
            "execution_metadata": {"total_tokens": total_tokens},
            "finished_at": int(time.time()), "steps": steps})


def root_of(call: NodeCall) -> Graph:
    """The container's body; NodeError when it has no root to start from (as Dify)."""
    body = call.graph.body(call.node.id)
    if body.root_id is None:
        raise NodeError(f"field start_node_id in {call.node.type} {call.node.id} not found",
                        "StartNodeIdNotFoundError")
    return body


def merge_updates(into: dict[str, dict[str, Any]],
                  updates: Mapping[str, Mapping[str, Any]]) -> None:
    for target, values in updates.items():
        into.setdefault(target, {}).update(values)
