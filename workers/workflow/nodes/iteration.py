"""The iteration node, as Dify's: its body runs once per item of `iterator_selector` with
`[iteration_id, "item"]` and `[iteration_id, "index"]` set, each pass from a copy of the
run's values (passes do not see each other's), and `output` is the value at
`output_selector` after each pass, in index order, flattened when every one is a list and
`flatten_output` (default on). `is_parallel` runs up to `parallel_nums` passes at once.

A failed pass (`error_handle_mode`): `terminated` fails the node and stops the other passes;
`continue-on-error` puts None at its index; `remove-abnormal-output` leaves it out. An empty
or null iterator answers `output: []` at once, without iteration events, as Dify does."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult, StepLimitReached
from workers.workflow.nodes.container import (
    ContainerEvents,
    Pass,
    merge_updates,
    root_of,
    run_pass,
    step_budget,
)
from workflow_graph.variables import MISSING


class ErrorHandleMode(StrEnum):
    TERMINATED = "terminated"
    CONTINUE_ON_ERROR = "continue-on-error"
    REMOVE_ABNORMAL_OUTPUT = "remove-abnormal-output"


@dataclass(frozen=True)
class _Outcome:
    output: Any
    failed: bool
    updates: dict[str, dict[str, Any]]
    total_tokens: int


async def run_iteration(call: NodeCall) -> NodeResult:
    node, data = call.node, call.node.data
    selector = list(data.get("iterator_selector") or [])
    items = call.pool.get(selector)
    if items is MISSING:
        raise NodeError(f"iterator variable {selector} not found",
                        "IteratorVariableNotFoundError")
    if items is None or items == []:
        return NodeResult(outputs={"output": []}, inputs={"iterator_selector": []})
    if not isinstance(items, list):
        raise NodeError(f"invalid iterator value: {items!r}, please provide a list.",
                        "InvalidIteratorValueError")
    try:
        mode = ErrorHandleMode(data.get("error_handle_mode") or ErrorHandleMode.TERMINATED)
    except ValueError as error:
        raise NodeError(f"unknown error_handle_mode {data.get('error_handle_mode')!r}",
                        "IterationNodeError") from error
    body = root_of(call)
    budget = step_budget(call)
    output_selector = list(data.get("output_selector") or [])
    events = ContainerEvents(call, "iteration")
    inputs = {"iterator_selector": items}
    outcomes: dict[int, _Outcome] = {}
    # Dify's default is 10 when a parallel iteration names no width.
    width = max(1, int(data.get("parallel_nums") or 10)) if data.get("is_parallel") else 1
    slots = asyncio.Semaphore(width)

    async def one(index: int, item: Any) -> None:
        async with slots:
            await events.next(index)
            at = Pass(node.id, "iteration", index)
            done = await run_pass(call, body, call.pool.with_outputs(
                node.id, {"item": item, "index": index}), at, budget)
            if done.error is not None and mode is ErrorHandleMode.TERMINATED:
                raise NodeError(done.error, "IterationNodeError")
            value = done.pool.get(output_selector)
            outcomes[index] = _Outcome(None if value is MISSING else value,
                                       done.error is not None, dict(done.updates),
                                       done.total_tokens)

    await events.started(inputs, {"iteration_length": len(items)})
    # Sequential passes queue on a semaphore of one, which lets them in in index order.
    tasks = [asyncio.create_task(one(i, item)) for i, item in enumerate(items)]
    failure: NodeError | None = None
    try:
        await asyncio.gather(*tasks)
    except NodeError as error:
        failure = error
    finally:
        for task in tasks:  # the first failure (or a stop) stops the passes still running
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if failure is not None:
        await events.completed(inputs=inputs, outputs={"output": _output(outcomes, mode, data)},
                               steps=len(outcomes), total_tokens=_tokens(outcomes),
                               error=failure.message)
        if isinstance(failure, StepLimitReached):
            raise failure
        raise NodeError(failure.message, "IterationNodeError") from failure
    outputs = {"output": _output(outcomes, mode, data)}
    total = _tokens(outcomes)
    await events.completed(inputs=inputs, outputs=outputs, steps=len(items), total_tokens=total)
    updates: dict[str, dict[str, Any]] = {}
    for index in sorted(outcomes):
        merge_updates(updates, outcomes[index].updates)
    return NodeResult(outputs=outputs, inputs=inputs, updates=updates,
                      usage={"total_tokens": total} if total else None)


def _output(outcomes: dict[int, _Outcome], mode: ErrorHandleMode,
            data: Mapping[str, Any]) -> list[Any]:
    values = [outcomes[i].output for i in sorted(outcomes)
              if not (outcomes[i].failed and mode is ErrorHandleMode.REMOVE_ABNORMAL_OUTPUT)]
    present = [v for v in values if v is not None]
    if data.get("flatten_output", True) and present and all(
            isinstance(v, list) for v in present):
        return [item for v in present for item in v]
    return values


def _tokens(outcomes: dict[int, _Outcome]) -> int:
    return sum(o.total_tokens for o in outcomes.values())
