"""Code and template-transform nodes in published workflows run by the engine (memory node,
the real sandbox): their outputs flow to the next nodes, and a program that tries to read
the host's files fails its node and the run with the program's error."""

from __future__ import annotations

import pytest

from tests.chat import app_with_key
from tests.harness import Node
from tests.workflows import edge, end_outputs, graph, graph_node, publish, text_input

PIPELINE = graph(
    [graph_node("start", "start", variables=[text_input("name")]),
     graph_node("shout", "code", code_language="python3",
                code="def main(name):\n    return {'loud': name.upper(), 'size': len(name)}",
                variables=[{"variable": "name", "value_selector": ["start", "name"]}],
                outputs={"loud": {"type": "string"}, "size": {"type": "number"}}),
     graph_node("count", "code", code_language="javascript",
                code="function main({size}) { return {double: size * 2} }",
                variables=[{"variable": "size", "value_selector": ["shout", "size"]}],
                outputs={"double": {"type": "number"}}),
     graph_node("card", "template-transform",
                template="{{ loud }} ({{ double }})",
                variables=[{"variable": "loud", "value_selector": ["shout", "loud"]},
                           {"variable": "double", "value_selector": ["count", "double"]}]),
     graph_node("end", "end", outputs=end_outputs(("card", ["card", "output"])))],
    [edge("start", "shout"), edge("shout", "count"), edge("count", "card"),
     edge("card", "end")])

SNOOP = graph(
    [graph_node("start", "start", variables=[]),
     graph_node("snoop", "code", code_language="python3",
                code="def main():\n    return {'data': open('/etc/passwd').read()}",
                variables=[], outputs={"data": {"type": "string"}}),
     graph_node("end", "end", outputs=end_outputs(("data", ["snoop", "data"])))],
    [edge("start", "snoop"), edge("snoop", "end")])


@pytest.fixture
async def auth(node: Node) -> dict[str, str]:
    return await node.setup_and_login()


async def run_blocking(node: Node, auth: dict[str, str], dsl: dict, inputs: dict) -> dict:
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Coder")
    publish(node, app_id, dsl)
    response = await node.client.post("/v1/workflows/run", headers=key, json={
        "inputs": inputs, "user": "ann", "response_mode": "blocking"})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_code_and_template_nodes_feed_the_next_nodes(node: Node,
                                                           auth: dict[str, str]) -> None:
    data = await run_blocking(node, auth, PIPELINE, {"name": "ada"})
    assert (data["status"], data["outputs"]) == ("succeeded", {"card": "ADA (6)"})


async def test_a_program_reading_host_files_fails_the_run(node: Node,
                                                          auth: dict[str, str]) -> None:
    data = await run_blocking(node, auth, SNOOP, {})
    assert data["status"] == "failed"
    assert data["error"] == ("node 'snoop' failed: FileNotFoundError: [Errno 2] No such file "
                             "or directory: '/etc/passwd' (line 2)")
    assert data["outputs"] in (None, {})
