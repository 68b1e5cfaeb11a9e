"""Iteration and loop containers run their bodies as Dify's nodes do: items in order (also in
parallel), each error mode, flattening, loop variables changed by assigners, break conditions
and loop-end, the round limit, nesting, a step budget shared with the body, idempotency keys
per index, a stop that stops the body, and Dify's container and body-node events."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import orjson
import pytest

from config import Settings
from schemas.base import EventPayload
from schemas.workflow.events import WorkflowBodyNodeRecorded
from schemas.workflow.naming import node_execution_id, node_idempotency_key
from tests.spec import validate, workflow_event_schema
from workers.workflow.body_journal import EventBodyJournal
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import (
    Executor,
    HumanInputRequired,
    NodeCall,
    NodeError,
    NodeResult,
    RunInfo,
    StepBudget,
    StepLimitReached,
)
from workflow_graph.graph import Graph, parse_graph
from workflow_graph.scheduler import (
    Fact,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    RunStarted,
    fold,
)
from workflow_graph.variables import MISSING, VariablePool

RUN_ID = uuid4()


@dataclass(frozen=True)
class Services:
    settings: Settings


@dataclass
class Recorder:
    """What the body's test executors saw, and the events the containers streamed."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    keys: dict[str, list[str]] = field(default_factory=dict)  # node id → idempotency keys
    scopes: list[str] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    async def emit(self, name: str, data: Mapping[str, Any]) -> None:
        self.events.append((name, dict(data)))

    def check_spec(self) -> None:
        """Each event as the engine streams it (StreamHead's envelope) is Dify's."""
        for name, data in self.events:
            validate(workflow_event_schema(name), {
                "event": name, "task_id": str(uuid4()), "workflow_run_id": str(RUN_ID),
                "data": data})

    def named(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == name]

    def saw(self, call: NodeCall) -> None:
        self.keys.setdefault(call.node.id, []).append(call.idempotency_key)
        self.scopes.append(call.scope)


def executors(rec: Recorder, **extra: Executor) -> dict[str, Executor]:
    """The real registry plus small test nodes: `double` (its `of` selector times two, after
    `wait` seconds), `fails-on` (fails on the value `bad`), `add` (an assigner: adds `by` to
    a loop variable, writing the loop's scope as variable-assigner does)."""

    async def double(call: NodeCall) -> NodeResult:
        rec.saw(call)
        rec.running += 1
        rec.most_running = max(rec.most_running, rec.running)
        try:
            await asyncio.sleep(float(call.node.data.get("wait", {}).get(
                str(call.pool.get(call.node.data["of"])), 0)))
        finally:
            rec.running -= 1
        return NodeResult(outputs={"result": call.pool.get(call.node.data["of"]) * 2})

    async def fails_on(call: NodeCall) -> NodeResult:
        rec.saw(call)
        value = call.pool.get(call.node.data["of"])
        if value == call.node.data["bad"]:
            raise NodeError(f"cannot take {value}", "TestError")
        return NodeResult(outputs={"result": value})

    async def add(call: NodeCall) -> NodeResult:
        rec.saw(call)
        loop_id, name = call.node.data["variable"]
        value = call.pool.get([loop_id, name]) + call.node.data.get("by", 1)
        return NodeResult(updates={loop_id: {name: value}})

    return {**EXECUTORS, "double": double, "fails-on": fails_on, "add": add, **extra}


def node(node_id: str, node_type: str, parent: str | None = None,
         **data: Any) -> dict[str, Any]:
    return {"id": node_id, **({"parentId": parent} if parent else {}),
            "data": {"type": node_type, "title": node_id.upper(), **data}}


def edge(source: str, target: str, handle: str = "source") -> dict[str, Any]:
    return {"id": f"{source}-{handle}-{target}", "source": source, "target": target,
            "sourceHandle": handle}


def iteration_graph(*body: dict[str, Any], body_edges: list[dict[str, Any]],
                    output: list[str], **data: Any) -> Graph:
    """start → it (over start.items, body given, start node `it-start`) → end."""
    return parse_graph({
        "nodes": [node("start", "start"),
                  node("it", "iteration", iterator_selector=["start", "items"],
                       output_selector=output, start_node_id="it-start", **data),
                  node("it-start", "iteration-start", "it"), *body,
                  node("end", "end", outputs=[{"variable": "out",
                                               "value_selector": ["it", "output"]}])],
        "edges": [edge("start", "it"), edge("it", "end"), *body_edges]})


DOUBLING = iteration_graph(node("d", "double", "it", of=["it", "item"]),
                           body_edges=[edge("it-start", "d")], output=["d", "result"])


def call_of(graph: Graph, node_id: str, rec: Recorder, pool: VariablePool,
            registry: Mapping[str, Executor] | None = None, steps: StepBudget | None = None,
            max_steps: int = 500) -> NodeCall:
    run = RunInfo(run_id=RUN_ID, task_id=uuid4(), app_id=uuid4(), tenant_id=uuid4(),
                  workflow_id=uuid4(), mode="workflow", user="u", end_user_id=None)
    return NodeCall(node=graph.node(node_id), graph=graph, pool=pool, run=run,
                    services=Services(Settings(WORKFLOW_MAX_EXECUTION_STEPS=max_steps)),
                    idempotency_key=node_idempotency_key(RUN_ID, node_id), emit=rec.emit,
                    executors=registry if registry is not None else executors(rec), steps=steps)


def items(values: Any) -> VariablePool:
    return VariablePool.for_run().with_outputs("start", {"items": values})


async def test_a_sequential_iteration_runs_its_body_per_item_in_order() -> None:
    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(DOUBLING, "it", rec, items([1, 2, 3])))
    assert result.outputs == {"output": [2, 4, 6]}
    assert result.inputs == {"iterator_selector": [1, 2, 3]}
    assert [e for e, _ in rec.events] == [
        "iteration_started", *["iteration_next", "node_started", "node_finished"] * 3,
        "iteration_completed"]
    assert rec.named("iteration_started")[0]["metadata"] == {"iteration_length": 3}
    assert [e["index"] for e in rec.named("iteration_next")] == [0, 1, 2]
    finished = rec.named("node_finished")
    assert {e["node_id"] for e in finished} == {"d"}  # iteration-start is not streamed
    assert [e["execution_metadata"] for e in finished] == [
        {"iteration_id": "it", "iteration_index": i} for i in range(3)]
    assert all(e["iteration_id"] == "it" for e in rec.named("node_started"))
    assert [e["outputs"] for e in finished] == [{"result": 2}, {"result": 4}, {"result": 6}]
    completed = rec.named("iteration_completed")[0]
    assert (completed["status"], completed["steps"], completed["outputs"]) == (
        "succeeded", 3, {"output": [2, 4, 6]})
    rec.check_spec()


async def test_a_body_without_iteration_start_starts_at_start_node_id() -> None:
    """DSLs from before iteration-start name the first body node; body nodes say which
    iteration they are in by `iteration_id` (no parentId)."""
    graph = parse_graph({
        "nodes": [node("start", "start"),
                  node("it", "iteration", iterator_selector=["start", "items"],
                       output_selector=["d2", "result"], start_node_id="d1"),
                  node("d1", "double", iteration_id="it", isInIteration=True,
                       of=["it", "item"]),
                  node("d2", "double", iteration_id="it", isInIteration=True,
                       of=["d1", "result"])],
        "edges": [edge("start", "it"), edge("d1", "d2")]})
    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1, 2])))
    assert result.outputs == {"output": [4, 8]}
    assert [e["node_id"] for e in rec.named("node_finished")] == ["d1", "d2"] * 2


async def test_body_nodes_get_an_idempotency_key_per_index() -> None:
    rec = Recorder()
    await EXECUTORS["iteration"](call_of(DOUBLING, "it", rec, items([5, 5, 5])))
    assert rec.keys["d"] == [node_idempotency_key(RUN_ID, "d", f"/it[{i}]") for i in range(3)]
    assert len(set(rec.keys["d"])) == 3
    assert [e["id"] for e in rec.named("node_finished")] == [
        str(node_execution_id(RUN_ID, "d", f"/it[{i}]")) for i in range(3)]
    assert rec.named("iteration_started")[0]["id"] == str(node_execution_id(RUN_ID, "it"))


async def test_a_parallel_iteration_keeps_index_order_within_its_width() -> None:
    # The first items take longest, so they finish last.
    graph = iteration_graph(node("d", "double", "it", of=["it", "item"],
                                 wait={"1": 0.05, "2": 0.03, "3": 0.01}),
                            body_edges=[edge("it-start", "d")], output=["d", "result"],
                            is_parallel=True, parallel_nums=2)
    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1, 2, 3, 4])))
    assert result.outputs == {"output": [2, 4, 6, 8]}
    assert rec.most_running == 2
    finished = [e["execution_metadata"]["iteration_index"] for e in rec.named("node_finished")]
    assert finished != sorted(finished)  # they did overlap and finish out of order


FAILING = iteration_graph(node("f", "fails-on", "it", of=["it", "item"], bad=2),
                          body_edges=[edge("it-start", "f")], output=["f", "result"])


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize(("mode", "output"), [
    ("continue-on-error", [1, None, 3]), ("remove-abnormal-output", [1, 3])])
async def test_error_modes_that_go_on(mode: str, output: list[Any], parallel: bool) -> None:
    graph = parse_graph({**FAILING.raw, "nodes": [
        {**n, "data": {**n["data"], "error_handle_mode": mode, "is_parallel": parallel}}
        if n["id"] == "it" else n for n in FAILING.raw["nodes"]]})
    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1, 2, 3])))
    assert result.outputs == {"output": output}
    failed = [e for e in rec.named("node_finished") if e["status"] == "failed"]
    assert [(e["error"], e["execution_metadata"]["iteration_index"]) for e in failed] == [
        ("cannot take 2", 1)]


@pytest.mark.parametrize("parallel", [False, True])
async def test_terminated_fails_the_iteration_at_the_first_failure(parallel: bool) -> None:
    graph = parse_graph({**FAILING.raw, "nodes": [
        {**n, "data": {**n["data"], "is_parallel": parallel, "parallel_nums": 1}}
        if n["id"] == "it" else n for n in FAILING.raw["nodes"]]})
    rec = Recorder()
    with pytest.raises(NodeError) as failure:
        await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1, 2, 3, 4])))
    assert failure.value.error_type == "IterationNodeError"
    assert "cannot take 2" in failure.value.message
    assert len(rec.keys["f"]) == 2  # items 3 and 4 never ran
    completed = rec.named("iteration_completed")[0]
    assert completed["status"] == "failed" and "cannot take 2" in completed["error"]
    rec.check_spec()


@pytest.mark.parametrize(("flatten", "output"), [(True, [1, 1, 2, 2]),
                                                 (False, [[1, 1], [2, 2]])])
async def test_list_outputs_are_flattened_unless_told_not_to(flatten: bool,
                                                             output: list[Any]) -> None:
    async def pair(call: NodeCall) -> NodeResult:
        item = call.pool.get(["it", "item"])
        return NodeResult(outputs={"pair": [item, item]})

    graph = iteration_graph(node("p", "pair", "it"), body_edges=[edge("it-start", "p")],
                            output=["p", "pair"], flatten_output=flatten)
    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1, 2]),
                                                  executors(rec, pair=pair)))
    assert result.outputs == {"output": output}


@pytest.mark.parametrize("empty", [[], None])
async def test_an_empty_iterator_answers_an_empty_output_at_once(empty: Any) -> None:
    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(DOUBLING, "it", rec, items(empty)))
    assert result.outputs == {"output": []}
    assert rec.events == []


@pytest.mark.parametrize(("pool", "error_type"), [
    (items("not a list"), "InvalidIteratorValueError"),
    (VariablePool.for_run(), "IteratorVariableNotFoundError")])
async def test_a_bad_iterator_fails_the_node(pool: VariablePool, error_type: str) -> None:
    with pytest.raises(NodeError) as failure:
        await EXECUTORS["iteration"](call_of(DOUBLING, "it", Recorder(), pool))
    assert failure.value.error_type == error_type


async def test_a_body_if_else_chooses_the_branch_per_item() -> None:
    graph = iteration_graph(
        node("if", "if-else", "it", cases=[{"case_id": "big", "logical_operator": "and",
                                            "conditions": [{
                                                "variable_selector": ["it", "item"],
                                                "comparison_operator": ">", "value": "2"}]}]),
        node("d", "double", "it", of=["it", "item"]),
        node("agg", "template", "it"),
        body_edges=[edge("it-start", "if"), edge("if", "d", "big"), edge("if", "agg", "false"),
                    edge("d", "agg")], output=["agg", "text"])

    async def template(call: NodeCall) -> NodeResult:
        doubled = call.pool.get(["d", "result"])
        shown = "-" if doubled is MISSING else doubled
        return NodeResult(outputs={"text": f"{call.pool.get(['it', 'item'])}->{shown}"})

    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(graph, "it", rec, items([3, 1]),
                                                  executors(rec, template=template)))
    # The second pass does not see the first's outputs: each pass starts from a copy.
    assert result.outputs == {"output": ["3->6", "1->-"]}


async def test_body_steps_count_against_the_runs_step_limit() -> None:
    graph = parse_graph({**FAILING.raw, "nodes": [
        {**n, "data": {**n["data"], "error_handle_mode": "continue-on-error"}}
        if n["id"] == "it" else n for n in FAILING.raw["nodes"]]})
    rec = Recorder()
    budget = StepBudget(limit=10, used=4)  # 3 passes of 2 nodes fit, the 4th does not
    with pytest.raises(StepLimitReached) as failure:
        await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1, 2, 3, 4]),
                                             steps=budget))
    assert failure.value.message == "Max steps 10 reached."
    assert budget.used == 10 and len(rec.keys["f"]) == 3
    # Without a budget from the engine the configured limit applies.
    with pytest.raises(StepLimitReached):
        await EXECUTORS["iteration"](call_of(DOUBLING, "it", Recorder(), items([1, 2, 3]),
                                             max_steps=5))


async def test_a_stop_cancels_the_body_promptly() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(call: NodeCall) -> NodeResult:
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("never")

    graph = iteration_graph(node("h", "hang", "it"), body_edges=[edge("it-start", "h")],
                            output=["h", "x"], is_parallel=True)
    rec = Recorder()
    task = asyncio.create_task(EXECUTORS["iteration"](call_of(
        graph, "it", rec, items([1, 2, 3]), executors(rec, hang=hang))))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


def loop_graph(*body: dict[str, Any], body_edges: list[dict[str, Any]], **data: Any) -> Graph:
    return parse_graph({
        "nodes": [node("start", "start"),
                  node("lp", "loop", start_node_id="lp-start", **data),
                  node("lp-start", "loop-start", "lp"), *body],
        "edges": [edge("start", "lp"), *body_edges]})


COUNTER = {"loop_variables": [{"label": "n", "var_type": "number", "value_type": "constant",
                               "value": "0"}]}


def n_at_least(value: int) -> list[dict[str, Any]]:
    return [{"variable_selector": ["lp", "n"], "comparison_operator": "≥", "value": str(value)}]


async def test_a_loop_carries_its_variables_until_the_break_condition() -> None:
    graph = loop_graph(node("inc", "add", "lp", variable=["lp", "n"], by=1),
                       body_edges=[edge("lp-start", "inc")], loop_count=10,
                       break_conditions=n_at_least(3), logical_operator="and", **COUNTER)
    rec = Recorder()
    result = await EXECUTORS["loop"](call_of(graph, "lp", rec, VariablePool.for_run()))
    assert result.outputs == {"n": 3, "loop_round": 3}
    assert result.inputs == {"loop_count": 10, "n": 0}
    assert result.updates == {}  # the loop's own variables stay inside it
    assert [e for e, _ in rec.events] == [
        "loop_started", "node_started", "node_finished", "loop_next", "node_started",
        "node_finished", "loop_next", "node_started", "node_finished", "loop_completed"]
    assert [e["index"] for e in rec.named("loop_next")] == [1, 2]
    assert [e["pre_loop_output"] for e in rec.named("loop_next")] == [
        {"n": 1, "loop_round": 1}, {"n": 2, "loop_round": 2}]
    assert [e["execution_metadata"] for e in rec.named("node_finished")] == [
        {"loop_id": "lp", "loop_index": i} for i in range(3)]
    completed = rec.named("loop_completed")[0]
    assert (completed["status"], completed["steps"], completed["outputs"]) == (
        "succeeded", 3, {"n": 3, "loop_round": 3})
    rec.check_spec()
    assert rec.keys["inc"] == [node_idempotency_key(RUN_ID, "inc", f"/lp[{i}]")
                               for i in range(3)]


async def test_a_loop_stops_at_its_count() -> None:
    graph = loop_graph(node("inc", "add", "lp", variable=["lp", "n"], by=2),
                       body_edges=[edge("lp-start", "inc")], loop_count=4,
                       break_conditions=n_at_least(100), logical_operator="and", **COUNTER)
    result = await EXECUTORS["loop"](call_of(graph, "lp", Recorder(), VariablePool.for_run()))
    assert result.outputs == {"n": 8, "loop_round": 4}


async def test_a_loop_whose_condition_holds_at_first_runs_no_round() -> None:
    graph = loop_graph(node("inc", "add", "lp", variable=["lp", "n"]),
                       body_edges=[edge("lp-start", "inc")], loop_count=5,
                       break_conditions=n_at_least(0), logical_operator="and", **COUNTER)
    rec = Recorder()
    result = await EXECUTORS["loop"](call_of(graph, "lp", rec, VariablePool.for_run()))
    assert result.outputs == {"n": 0, "loop_round": 0}
    assert "inc" not in rec.keys


async def test_a_loop_end_in_a_branch_ends_the_loop_after_its_round() -> None:
    graph = loop_graph(
        node("inc", "add", "lp", variable=["lp", "n"]),
        node("if", "if-else", "lp", cases=[{"case_id": "done", "logical_operator": "and",
                                            "conditions": n_at_least(2)}]),
        node("end", "loop-end", "lp"),
        body_edges=[edge("lp-start", "inc"), edge("inc", "if"), edge("if", "end", "done")],
        loop_count=10, break_conditions=[], logical_operator="and", **COUNTER)
    rec = Recorder()
    result = await EXECUTORS["loop"](call_of(graph, "lp", rec, VariablePool.for_run()))
    assert result.outputs == {"n": 2, "loop_round": 2}
    assert [e["node_id"] for e in rec.named("node_finished")][-1] == "end"


async def test_a_failed_body_node_fails_the_loop() -> None:
    graph = loop_graph(node("inc", "add", "lp", variable=["lp", "n"]),
                       node("f", "fails-on", "lp", of=["lp", "n"], bad=2),
                       body_edges=[edge("lp-start", "inc"), edge("inc", "f")],
                       loop_count=5, break_conditions=[], logical_operator="and", **COUNTER)
    rec = Recorder()
    with pytest.raises(NodeError) as failure:
        await EXECUTORS["loop"](call_of(graph, "lp", rec, VariablePool.for_run()))
    assert "cannot take 2" in failure.value.message
    assert rec.named("loop_completed")[0]["status"] == "failed"


async def test_loop_variables_from_selectors_and_json_constants() -> None:
    seen: list[Any] = []

    async def look(call: NodeCall) -> NodeResult:
        seen.append((call.pool.get(["lp", "q"]), call.pool.get(["lp", "xs"]),
                     call.pool.get(["lp", "index"])))
        return NodeResult()

    graph = loop_graph(node("look", "look", "lp"), body_edges=[edge("lp-start", "look")],
                       loop_count=2, break_conditions=[], logical_operator="and",
                       loop_variables=[
                           {"label": "q", "var_type": "string", "value_type": "variable",
                            "value": ["start", "query"]},
                           {"label": "xs", "var_type": "array[number]",
                            "value_type": "constant", "value": "[1, 2]"}])
    rec = Recorder()
    pool = VariablePool.for_run().with_outputs("start", {"query": "hi"})
    result = await EXECUTORS["loop"](call_of(graph, "lp", rec, pool, executors(rec, look=look)))
    assert seen == [("hi", [1, 2], 0), ("hi", [1, 2], 1)]
    assert result.outputs == {"q": "hi", "xs": [1, 2], "loop_round": 2}


async def test_an_iteration_nested_in_a_loop() -> None:
    """Each round iterates over the items doubling them, then adds the doubled total to the
    loop's `n`; keys are per round and per item."""

    async def total(call: NodeCall) -> NodeResult:
        rec.saw(call)
        n = call.pool.get(["lp", "n"]) + sum(call.pool.get(["it", "output"]))
        return NodeResult(updates={"lp": {"n": n}})

    graph = parse_graph({
        "nodes": [node("start", "start"),
                  node("lp", "loop", start_node_id="lp-start", loop_count=3,
                       break_conditions=n_at_least(12), logical_operator="and", **COUNTER),
                  node("lp-start", "loop-start", "lp"),
                  node("it", "iteration", "lp", iterator_selector=["start", "items"],
                       output_selector=["d", "result"], start_node_id="it-start"),
                  node("it-start", "iteration-start", "it"),
                  node("d", "double", "it", of=["it", "item"]),
                  node("sum", "total", "lp")],
        "edges": [edge("start", "lp"), edge("lp-start", "it"), edge("it", "sum"),
                  edge("it-start", "d")]})
    rec = Recorder()
    result = await EXECUTORS["loop"](call_of(graph, "lp", rec, items([1, 2]),
                                             executors(rec, total=total)))
    assert result.outputs == {"n": 12, "loop_round": 2}
    assert rec.keys["d"] == [node_idempotency_key(RUN_ID, "d", f"/lp[{r}]/it[{i}]")
                             for r in range(2) for i in range(2)]
    started = [e for e, _ in rec.events if e.endswith("_started")]
    assert started.count("iteration_started") == 2 and started.count("loop_started") == 1


async def test_body_text_chunks_are_not_the_runs_text() -> None:
    async def speak(call: NodeCall) -> NodeResult:
        await call.emit("text_chunk", {"text": "inner"})
        await call.emit("agent_log", {"label": "kept"})
        return NodeResult(outputs={"text": "inner"})

    graph = iteration_graph(node("s", "speak", "it"), body_edges=[edge("it-start", "s")],
                            output=["s", "text"])
    rec = Recorder()
    await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1]),
                                         executors(rec, speak=speak)))
    assert not rec.named("text_chunk") and rec.named("agent_log") == [{"label": "kept"}]


async def test_body_writes_to_outer_scopes_are_passed_on() -> None:
    async def remember(call: NodeCall) -> NodeResult:
        return NodeResult(updates={"conversation": {"last": call.pool.get(["it", "item"])}})

    graph = iteration_graph(node("r", "remember", "it"), body_edges=[edge("it-start", "r")],
                            output=["r", "x"])
    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(graph, "it", rec, items(["a", "b"]),
                                                  executors(rec, remember=remember)))
    assert result.updates == {"conversation": {"last": "b"}}


async def test_a_body_node_retries_as_configured() -> None:
    tries: list[int] = []

    async def flaky(call: NodeCall) -> NodeResult:
        tries.append(call.attempt)
        if call.attempt < 2:
            raise NodeError("not yet")
        return NodeResult(outputs={"x": call.pool.get(["it", "item"])})

    graph = iteration_graph(node("fl", "flaky", "it", retry_config={
        "retry_enabled": True, "max_retries": 2, "retry_interval": 0}),
        body_edges=[edge("it-start", "fl")], output=["fl", "x"])
    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(graph, "it", rec, items(["a"]),
                                                  executors(rec, flaky=flaky)))
    assert result.outputs == {"output": ["a"]} and tries == [0, 1, 2]
    assert [e["retry_index"] for e in rec.named("node_retry")] == [0, 1]
    rec.check_spec()


async def test_a_body_node_cannot_pause_for_human_input() -> None:
    async def ask(call: NodeCall) -> NodeResult:
        raise HumanInputRequired({"inputs": []}, timeout_seconds=60)

    graph = iteration_graph(node("ask", "human-input", "it"),
                            body_edges=[edge("it-start", "ask")], output=["ask", "x"])
    rec = Recorder()
    with pytest.raises(NodeError) as failure:
        await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1]),
                                             executors(rec, **{"human-input": ask})))
    assert "cannot wait for human input inside iteration it" in failure.value.message


async def test_a_body_nodes_fail_branch_takes_its_error_path() -> None:
    graph = iteration_graph(
        node("f", "fails-on", "it", of=["it", "item"], bad=2, error_strategy="fail-branch"),
        node("fallback", "template", "it"),
        body_edges=[edge("it-start", "f"), edge("f", "fallback", "fail-branch")],
        output=["f", "result"])

    async def template(call: NodeCall) -> NodeResult:
        return NodeResult(outputs={"text": call.pool.get(["f", "error_message"])})

    rec = Recorder()
    result = await EXECUTORS["iteration"](call_of(graph, "it", rec, items([1, 2]),
                                                  executors(rec, template=template)))
    assert result.outputs == {"output": [1, None]}
    statuses = [(e["node_id"], e["status"]) for e in rec.named("node_finished")]
    assert statuses == [("f", "succeeded"), ("f", "exception"), ("fallback", "succeeded")]
    rec.check_spec()


@dataclass
class MemoryJournal:
    """The engine's record of body facts, as a member that dies leaves it."""

    facts: dict[str, list[Fact]] = field(default_factory=dict)

    def recorded(self, scope: str) -> list[Fact]:
        return list(self.facts.get(scope, []))

    async def record(self, scope: str, fact: Fact) -> None:
        self.facts.setdefault(scope, []).append(fact)

    async def forget(self, scope: str) -> None:
        self.facts.pop(scope, None)


@pytest.mark.parametrize("container", ["iteration", "loop"])
async def test_a_takeover_replays_recorded_passes_and_reruns_only_the_node_in_flight(
        container: str) -> None:
    journal, entered = MemoryJournal(), asyncio.Event()
    ran: list[tuple[int, str]] = []

    def gated(hang_on: int | None) -> Executor:
        async def double(call: NodeCall) -> NodeResult:
            item = call.pool.get(call.node.data["of"])
            ran.append((item, call.idempotency_key))
            if item == hang_on:
                entered.set()
                await asyncio.Event().wait()  # the member dies here
            return NodeResult(outputs={"result": item * 2})
        return double

    if container == "iteration":
        graph = iteration_graph(node("d", "gated", "it", of=["it", "item"]),
                                body_edges=[edge("it-start", "d")], output=["d", "result"])
        pool, scope, expected = items([1, 2, 3]), "/it[2]", {"output": [2, 4, 6]}
    else:  # each round adds one to n, then doubles it
        graph = loop_graph(node("inc", "add", "lp", variable=["lp", "n"]),
                           node("d", "gated", "lp", of=["lp", "n"]),
                           body_edges=[edge("lp-start", "inc"), edge("inc", "d")],
                           loop_count=3, break_conditions=[], logical_operator="and",
                           **COUNTER)
        pool, scope, expected = VariablePool.for_run(), "/lp[2]", {"n": 3, "loop_round": 3}
    container_id = graph.nodes[1].id
    rec = Recorder()
    first = dataclasses.replace(call_of(graph, container_id, rec, pool, executors(
        rec, gated=gated(hang_on=3))), journal=journal)
    task = asyncio.create_task(EXECUTORS[container](first))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [item for item, _ in ran] == [1, 2, 3]
    ran.clear()
    others = sum(map(len, rec.keys.values()))  # the loop's `inc` ran 3 times
    taken_over = dataclasses.replace(first, executors=executors(rec, gated=gated(None)))
    result = await EXECUTORS[container](taken_over)
    assert result.outputs == expected
    assert ran == [(3, node_idempotency_key(RUN_ID, "d", scope))]
    assert sum(map(len, rec.keys.values())) == others


async def test_a_retried_container_replays_passed_items_and_reruns_the_failed_one() -> None:
    journal, rec = MemoryJournal(), Recorder()
    first = dataclasses.replace(call_of(FAILING, "it", rec, items([1, 2, 3])), journal=journal)
    with pytest.raises(NodeError):
        await EXECUTORS["iteration"](first)
    assert len(rec.keys["f"]) == 2  # item 1 passed, item 2 failed
    fixed = dataclasses.replace(FAILING.node("f"), data={**FAILING.node("f").data, "bad": 0})
    retried = dataclasses.replace(first, graph=dataclasses.replace(
        FAILING, nodes=tuple(fixed if n.id == "f" else n for n in FAILING.nodes)),
        attempt=1)
    result = await EXECUTORS["iteration"](retried)
    assert result.outputs == {"output": [1, 2, 3]}
    assert rec.keys["f"][2:] == [node_idempotency_key(RUN_ID, "f", f"/it[{i}]")
                                 for i in (1, 2)]


async def test_the_engines_journal_keeps_body_facts_across_members() -> None:
    """What one member records (masked, as run events), a member loading the run later reads
    back from its history; a forgotten scope stays forgotten."""
    recorded: list[EventPayload] = []

    async def commit(payload: EventPayload) -> None:
        recorded.append(payload)

    writer = EventBodyJournal(commit, mask=lambda v: orjson.loads(
        orjson.dumps(v).replace(b"s3cret", b"***")))
    facts: list[Fact] = [NodeStarted("d"), NodeSucceeded("d", {"token": "s3cret"}, "true",
                                                          {"lp": {"n": 1}}),
                         NodeFailed("e", "boom", "TestError")]
    for fact in facts:
        await writer.record("/it[0]", fact)
    await writer.record("/it[1]", NodeStarted("d"))
    await writer.forget("/it[1]")
    assert all(isinstance(p, WorkflowBodyNodeRecorded) for p in recorded)
    reader = EventBodyJournal(commit, mask=lambda v: v)
    reader.load(recorded)
    assert reader.recorded("/it[0]") == (
        NodeStarted("d"), NodeSucceeded("d", {"token": "***"}, "true", {"lp": {"n": 1}}),
        NodeFailed("e", "boom", "TestError"))
    assert reader.recorded("/it[1]") == () and reader.starts == 1


def test_a_body_is_a_graph_rooted_at_its_start_node() -> None:
    body = DOUBLING.body("it")
    assert body.start_node() == body.node("it-start")
    assert {n.id for n in body.top_level()} == {"it-start", "d"}
    assert [(e.source, e.target) for e in body.edges] == [("it-start", "d")]
    # The run's graph still starts at its start node and schedules only the top level.
    assert DOUBLING.start_node() == DOUBLING.node("start")
    pool = items([1]).with_outputs("it", {"item": 1})
    state = fold(body, [RunStarted(), NodeStarted("it-start"), NodeSucceeded("it-start")],
                 pool=pool)
    assert state.ready == ("d",) and state.pool.get(["start", "items"]) == [1]

