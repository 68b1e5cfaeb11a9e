"""A draft's graph is validated as Dify does when it is saved: each error names the node or
edge; tool and agent nodes pass with a "needs a plugin" warning."""

from __future__ import annotations

from typing import Any

import pytest

from workflow_graph.errors import (
    DanglingEdge,
    DslError,
    DuplicateNode,
    GraphCycle,
    MissingStartNode,
    UnknownNodeType,
)
from workflow_graph.graph import NODE_TYPES, parse_graph, validate


def node(node_id: str, node_type: str, parent: str | None = None,
         **data: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": node_id, "data": {"type": node_type, "title": node_id, **data}}
    if parent:
        raw["parentId"] = parent
    return raw


def edge(source: str, target: str, handle: str = "source") -> dict[str, Any]:
    return {"id": f"{source}-{target}", "source": source, "target": target,
            "sourceHandle": handle}


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Any:
    return parse_graph({"nodes": nodes, "edges": edges})


def test_every_dify_node_type_is_known() -> None:
    nodes = [node("start", "start")] + [node(f"n{i}", t) for i, t in
                                        enumerate(sorted(NODE_TYPES - {"start"}))]
    warnings = validate(graph(nodes, []), "workflow")
    assert sorted(w.node_id for w in warnings) == sorted(
        n["id"] for n in nodes if n["data"]["type"] in {"tool", "agent"})


def test_unknown_node_type_names_the_node() -> None:
    with pytest.raises(UnknownNodeType) as caught:
        validate(graph([node("s", "start"), node("x1", "teleport")], []), "workflow")
    assert (caught.value.node_id, caught.value.node_type) == ("x1", "teleport")
    assert "'x1'" in str(caught.value)


def test_dangling_edge_names_the_edge_and_the_missing_node() -> None:
    with pytest.raises(DanglingEdge) as caught:
        validate(graph([node("s", "start")], [edge("s", "ghost")]), "workflow")
    assert (caught.value.edge_id, caught.value.missing_node_id) == ("s-ghost", "ghost")
    with pytest.raises(DanglingEdge, match="source 'ghost'"):
        validate(graph([node("s", "start")], [edge("ghost", "s")]), "workflow")


def test_a_cycle_at_the_top_level_is_refused_with_its_nodes() -> None:
    nodes = [node("s", "start"), node("a", "code"), node("b", "llm"), node("e", "end")]
    edges = [edge("s", "a"), edge("a", "b"), edge("b", "a"), edge("b", "e")]
    with pytest.raises(GraphCycle) as caught:
        validate(graph(nodes, edges), "workflow")
    assert set(caught.value.node_ids) == {"a", "b"}


def test_a_cycle_through_a_branch_is_refused() -> None:
    nodes = [node("s", "start"), node("if", "if-else"), node("a", "code")]
    edges = [edge("s", "if"), edge("if", "a", "true"), edge("a", "if")]
    with pytest.raises(GraphCycle):
        validate(graph(nodes, edges), "workflow")


def test_loops_and_iterations_are_containers_not_cycles() -> None:
    nodes = [node("s", "start"), node("loop", "loop"), node("ls", "loop-start", "loop"),
             node("body", "code", "loop"), node("le", "loop-end", "loop"),
             node("it", "iteration"), node("is", "iteration-start", "it"),
             node("step", "llm", "it"), node("e", "end")]
    edges = [edge("s", "loop"), edge("ls", "body"), edge("body", "le"), edge("loop", "it"),
             edge("is", "step"), edge("it", "e")]
    assert validate(graph(nodes, edges), "workflow") == []


def test_a_cycle_inside_a_container_body_is_still_refused() -> None:
    nodes = [node("s", "start"), node("it", "iteration"), node("a", "code", "it"),
             node("b", "code", "it")]
    with pytest.raises(GraphCycle):
        validate(graph(nodes, [edge("s", "it"), edge("a", "b"), edge("b", "a")]), "workflow")


@pytest.mark.parametrize("mode", ["workflow", "advanced-chat"])
def test_workflow_apps_need_a_start_node(mode: str) -> None:
    with pytest.raises(MissingStartNode, match=mode):
        validate(graph([node("e", "end")], []), mode)


def test_duplicate_node_ids_are_refused() -> None:
    with pytest.raises(DuplicateNode, match="'a'"):
        validate(graph([node("a", "start"), node("a", "end")], []), "workflow")


def test_tool_and_agent_nodes_warn_with_their_plugin() -> None:
    nodes = [node("s", "start"), node("t", "tool", provider_id="langgenius/google"),
             node("ag", "agent", agent_strategy_provider_name="langgenius/agent")]
    warnings = validate(graph(nodes, [edge("s", "t"), edge("t", "ag")]), "workflow")
    assert [(w.node_id, "langgenius/google" in w.message or "langgenius/agent" in w.message)
            for w in warnings] == [("t", True), ("ag", True)]


def test_canvas_notes_are_not_nodes() -> None:
    g = parse_graph({"nodes": [node("s", "start"),
                               {"id": "n", "type": "custom-note", "data": {"type": ""}}],
                     "edges": []})
    assert [n.id for n in g.nodes] == ["s"]
    assert validate(g, "workflow") == []


def test_a_graph_that_is_not_a_mapping_is_a_dsl_error() -> None:
    with pytest.raises(DslError, match=r"workflow\.graph\.nodes: must be a list"):
        parse_graph({"nodes": "start"})
