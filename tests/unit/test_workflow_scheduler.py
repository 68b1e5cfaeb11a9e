"""The scheduler folds a run's history into what runs next: branches, joins, skips, ends,
failures and limits as Dify's engine decides them; replay-safe, and a history cut anywhere
resumes with exactly the unfinished nodes (property tests)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflow_graph.dsl import load_dsl
from workflow_graph.errors import HistoryError
from workflow_graph.graph import Graph, parse_graph
from workflow_graph.pure_nodes import PURE_NODE_TYPES, run_pure_node
from workflow_graph.scheduler import (
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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dify_dsl"
Executor = Callable[[str, RunState], Fact]


def build(nodes: Mapping[str, str], edges: list[tuple[str, str] | tuple[str, str, str]],
          data: Mapping[str, Mapping[str, Any]] | None = None) -> Graph:
    data = data or {}
    return parse_graph({
        "nodes": [{"id": n, "data": {"type": t, "title": n, **data.get(n, {})}}
                  for n, t in nodes.items()],
        "edges": [{"id": f"{e[0]}-{e[1]}", "source": e[0], "target": e[1],
                   "sourceHandle": e[2] if len(e) == 3 else "source"} for e in edges]})


def run(graph: Graph, history: list[Fact], execute: Executor,
        limits: Limits = Limits()) -> list[Fact]:
    """A member's loop: start what the state says, record each result, fold again."""
    history = list(history)
    while (state := fold(graph, history, limits)).status is RunStatus.RUNNING:
        history += [NodeStarted(n) for n in state.to_start]
        for node_id in state.to_start:
            history.append(execute(node_id, fold(graph, history, limits)))
    return history


def executor(graph: Graph, outputs: Mapping[str, Fact] | None = None) -> Executor:
    """Pure nodes run for real; the others answer their recorded fact, or some text."""
    def execute(node_id: str, state: RunState) -> Fact:
        node = graph.node(node_id)
        if outputs and node_id in outputs:
            return outputs[node_id]
        if node.type in PURE_NODE_TYPES:
            return run_pure_node(node, state.pool, state.inputs)
        return NodeSucceeded(node_id, {"text": f"{node_id} says hi"})
    return execute


def test_tod_agent_export_takes_the_true_branch_and_skips_the_other_answer() -> None:
    dsl = load_dsl((FIXTURES / "tod_agent_advanced_chat_0.1.5.yml").read_text())
    assert dsl.workflow is not None
    graph = dsl.workflow.graph
    agent, llm = "1742523567258", "1742523618478"
    history = run(graph, [RunStarted(system={"query": "book a table"})], executor(graph, {
        agent: NodeSucceeded(agent, {"text": "ok InformationCollectionCompleted"}),
        llm: NodeSucceeded(llm, {"text": "Your table is booked."})}))
    state = fold(graph, history)
    assert state.status is RunStatus.SUCCEEDED
    assert state.answer == "Your table is booked."
    assert "answer" in state.skipped  # the else branch's answer node
    assert state.finished == ("1742523552659", agent, "1742523610643", llm, "1742523717912")


def test_tod_agent_export_else_branch_answers_with_the_agent_text() -> None:
    dsl = load_dsl((FIXTURES / "tod_agent_advanced_chat_0.1.5.yml").read_text())
    assert dsl.workflow is not None
    graph = dsl.workflow.graph
    agent = "1742523567258"
    history = run(graph, [RunStarted()], executor(graph, {
        agent: NodeSucceeded(agent, {"text": "What time?"})}))
    state = fold(graph, history)
    assert (state.status, state.answer) == (RunStatus.SUCCEEDED, "What time?")
    assert {"1742523618478", "1742523717912"} <= state.skipped


PARALLEL = build({"s": "start", "a": "code", "b": "llm", "j": "template-transform",
                  "e": "end"},
                 [("s", "a"), ("s", "b"), ("a", "j"), ("b", "j"), ("j", "e")],
                 {"e": {"outputs": [{"variable": "result", "value_selector": ["j", "text"]},
                                    {"variable": "q", "value_selector": ["s", "q"]}]}})


def test_parallel_branches_are_ready_together_and_the_join_waits_for_both() -> None:
    history: list[Fact] = [RunStarted(inputs={"q": "hi"}), NodeStarted("s"),
                           NodeSucceeded("s", {"q": "hi"})]
    assert fold(PARALLEL, history).ready == ("a", "b")
    history += [NodeStarted("a"), NodeStarted("b"), NodeSucceeded("a", {"text": "A"})]
    state = fold(PARALLEL, history)
    assert (state.in_flight, state.ready) == (("b",), ())
    history.append(NodeSucceeded("b", {"text": "B"}))
    assert fold(PARALLEL, history).ready == ("j",)


def test_the_run_ends_with_the_end_nodes_outputs() -> None:
    history = run(PARALLEL, [RunStarted(inputs={"q": "hi"})], executor(PARALLEL))
    state = fold(PARALLEL, history)
    assert state.status is RunStatus.SUCCEEDED
    assert state.outputs == {"result": "j says hi", "q": "hi"}
    assert state.to_start == ()


BRANCH = build({"s": "start", "if": "if-else", "x": "code", "y": "code", "j": "answer",
                "after_y": "llm"},
               [("s", "if"), ("if", "x", "yes"), ("if", "y", "false"), ("x", "j"),
                ("y", "after_y"), ("after_y", "j")],
               {"if": {"cases": [{"case_id": "yes", "logical_operator": "and",
                                  "conditions": [{"variable_selector": ["sys", "query"],
                                                  "comparison_operator": "contains",
                                                  "value": "refund"}]}]},
                "j": {"answer": "done: {{#x.text#}}{{#after_y.text#}}"}})


def test_a_join_after_a_branch_runs_once_the_untaken_side_is_skipped() -> None:
    history = run(BRANCH, [RunStarted(system={"query": "refund please"})], executor(BRANCH))
    state = fold(BRANCH, history)
    assert state.skipped == {"y", "after_y"}
    # As in Dify, a reference to a node that never ran renders as its selector text.
    assert state.answer == "done: x says hiafter_y.text"


def test_the_else_branch_skips_the_case_branch() -> None:
    history = run(BRANCH, [RunStarted(system={"query": "hello"})], executor(BRANCH))
    state = fold(BRANCH, history)
    assert state.skipped == {"x"}
    assert state.finished[-1] == "j" and state.status is RunStatus.SUCCEEDED


def test_a_failed_node_fails_the_run_and_nothing_more_starts() -> None:
    history: list[Fact] = [RunStarted(), NodeStarted("s"), NodeSucceeded("s"),
                           NodeStarted("a"), NodeStarted("b"), NodeFailed("a", "boom")]
    state = fold(PARALLEL, history)
    assert state.status is RunStatus.FAILED
    assert state.error == "node 'a' failed: boom"
    assert state.to_start == ()


def test_error_strategies_keep_the_run_going() -> None:
    graph = build({"s": "start", "h": "http-request", "ok": "code", "oops": "code",
                   "d": "code", "e": "end"},
                  [("s", "h"), ("h", "ok"), ("h", "oops", "fail-branch"), ("s", "d"),
                   ("ok", "e"), ("oops", "e"), ("d", "e")],
                  {"h": {"error_strategy": "fail-branch"},
                   "d": {"error_strategy": "default-value",
                         "default_value": [{"key": "text", "value": "fallback",
                                            "type": "string"}]}})
    history = run(graph, [RunStarted()], executor(graph, {
        "h": NodeFailed("h", "timed out", "TimeoutError"),
        "d": NodeFailed("d", "bad code")}))
    state = fold(graph, history)
    assert state.status is RunStatus.SUCCEEDED
    assert state.skipped == {"ok"}
    assert state.pool.get("h.error_message") == "timed out"
    assert state.pool.get("d.text") == "fallback"


def test_plain_nodes_take_every_out_edge_whatever_handle_they_record() -> None:
    graph = build({"s": "start", "c": "code", "x": "llm", "y": "llm", "h": "http-request",
                   "ok": "code", "oops": "code"},
                  [("s", "c"), ("c", "x"), ("c", "y", "other"), ("s", "h"), ("h", "ok"),
                   ("h", "oops", "fail-branch")],
                  {"h": {"error_strategy": "fail-branch"}})
    history = run(graph, [RunStarted()], executor(graph, {"c": NodeSucceeded("c", {}, "x")}))
    state = fold(graph, history)
    assert set(state.finished) == {"s", "c", "x", "y", "h", "ok"}
    assert state.skipped == {"oops"}  # a fail-branch node that succeeds skips that branch


def test_max_steps_fails_the_run_with_the_reason() -> None:
    limits = Limits(max_execution_steps=3)
    history = run(PARALLEL, [RunStarted()], executor(PARALLEL), limits)
    state = fold(PARALLEL, history, limits)
    assert (state.status, state.error) == (RunStatus.FAILED, "Max steps 3 reached.")
    assert state.steps == 3 and "j" not in state.finished


def test_max_execution_time_fails_a_run_still_running() -> None:
    history: list[Fact] = [RunStarted(at=1000.0), NodeStarted("s")]
    assert fold(PARALLEL, history, now=1500.0).status is RunStatus.RUNNING
    state = fold(PARALLEL, history, Limits(max_execution_time=600), now=1601.0)
    assert (state.status, state.error) == (RunStatus.FAILED, "Max execution time 600s reached.")


def test_a_repeated_result_is_applied_once() -> None:
    history: list[Fact] = [RunStarted(), NodeStarted("s"), NodeSucceeded("s", {"q": 1}),
                           NodeStarted("s"), NodeSucceeded("s", {"q": 2})]
    state = fold(PARALLEL, history)
    assert state.pool.get("s.q") == 1 and state.steps == 1


@pytest.mark.parametrize(("history", "words"), [
    ([], "begins with RunStarted"),
    ([NodeStarted("s")], "begins with RunStarted"),
    ([RunStarted(), RunStarted()], "starts once"),
    ([RunStarted(), NodeSucceeded("s")], "never started"),
    ([RunStarted(), NodeStarted("ghost")], "not a top-level node"),
])
def test_inconsistent_histories_are_refused(history: list[Fact], words: str) -> None:
    with pytest.raises(HistoryError, match=words):
        fold(PARALLEL, history)


# Property tests: random DAGs whose nodes pick random branch handles.

@st.composite
def runs(draw: st.DrawFn) -> tuple[Graph, dict[str, str], list[int]]:
    size = draw(st.integers(2, 9))
    ids = [f"n{i}" for i in range(size)]
    nodes = {ids[0]: "start",
             **{i: draw(st.sampled_from(["code", "question-classifier"])) for i in ids[1:]}}
    edges: list[tuple[str, str, str]] = []
    for j in range(1, size):
        sources = draw(st.sets(st.integers(0, j - 1), min_size=0, max_size=3))
        edges += [(ids[i], ids[j], draw(st.sampled_from(["source", "a", "b"])))
                  for i in sorted(sources)]
    handles = {n: draw(st.sampled_from(["source", "a", "b"])) for n in ids}
    order = draw(st.lists(st.integers(0, 100), min_size=30, max_size=30))
    return build(nodes, edges), handles, order


def branching(handles: Mapping[str, str]) -> Executor:
    return lambda node_id, _: NodeSucceeded(node_id, {"v": node_id}, handles[node_id])


def run_interleaved(graph: Graph, history: list[Fact], execute: Executor,
                    order: list[int]) -> list[Fact]:
    """Like `run`, but parallel nodes finish in an order the test draws."""
    history = list(history)
    step = 0
    while (state := fold(graph, history)).status is RunStatus.RUNNING:
        history += [NodeStarted(n) for n in state.ready]
        pending = fold(graph, history).in_flight
        done = pending[order[step % len(order)] % len(pending)]
        step += 1
        history.append(execute(done, state))
    return history


@settings(max_examples=150, deadline=None)
@given(runs())
def test_folding_is_replay_safe_and_a_cut_history_resumes_exactly(
        case: tuple[Graph, dict[str, str], list[int]]) -> None:
    graph, handles, order = case
    execute = branching(handles)
    full = run_interleaved(graph, [RunStarted()], execute, order)
    final = fold(graph, full)
    assert final == fold(graph, full)  # replay-safe
    assert final.status is RunStatus.SUCCEEDED
    for cut in range(1, len(full) + 1):
        prefix = full[:cut]
        state = fold(graph, prefix)
        assert state == fold(graph, list(prefix))
        finished = {f.node_id for f in prefix if isinstance(f, NodeSucceeded)}
        started = {f.node_id for f in prefix if isinstance(f, NodeStarted)}
        assert not finished & set(state.to_start), "a finished node would run again"
        assert set(state.in_flight) == started - finished
        assert set(state.to_start) >= started - finished  # the dead member's work resumes
        resumed = run(graph, prefix, execute)
        after_cut = [f.node_id for f in resumed[cut:] if isinstance(f, NodeSucceeded)]
        assert not finished & set(after_cut)
        assert len(after_cut) == len(set(after_cut)), "a node finished twice"
        again = fold(graph, resumed)
        assert (again.status, set(again.finished), again.skipped, again.pool) == (
            final.status, set(final.finished), final.skipped, final.pool)


@settings(max_examples=150, deadline=None)
@given(runs())
def test_every_node_is_finished_or_skipped_as_its_edges_decide(
        case: tuple[Graph, dict[str, str], list[int]]) -> None:
    graph, handles, order = case
    state = fold(graph, run_interleaved(graph, [RunStarted()], branching(handles), order))
    finished = set(state.finished)

    def taken(node_id: str) -> list[bool]:
        return [e.source in finished and (handles[e.source] == e.source_handle
                                          or graph.node(e.source).type != "question-classifier")
                for e in graph.incoming(node_id)]

    for node in graph.nodes:
        if node.type == "start":
            assert node.id in finished
        elif node.id in finished:
            assert any(taken(node.id)), f"{node.id} ran with no taken in-edge"
        elif node.id in state.skipped:
            assert not any(taken(node.id))
            assert all(e.source in finished or e.source in state.skipped
                       for e in graph.incoming(node.id))
        else:
            pytest.fail(f"{node.id} was neither run nor skipped")
