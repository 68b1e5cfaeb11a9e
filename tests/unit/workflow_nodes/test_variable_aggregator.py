"""variable-aggregator (and its old name variable-assigner): the first variable that has a
value, per group when groups are on."""

from __future__ import annotations

from pathlib import Path

from tests.workflow_nodes import execute, services
from workflow_graph.variables import VariablePool

# Only the branch that ran wrote its outputs: "b" and "d" never ran.
POOL = VariablePool.for_run().with_outputs("c", {"text": "from c", "n": 0}) \
    .with_outputs("e", {"n": None})


async def test_the_first_variable_with_a_value_is_the_output(tmp_path: Path) -> None:
    data = {"output_type": "string", "variables": [["b", "text"], ["c", "text"], ["d", "text"]]}
    for node_type in ("variable-aggregator", "variable-assigner"):
        result = await execute(node_type, data, POOL, services(tmp_path))
        assert result.outputs == {"output": "from c"}
        assert result.inputs == {"text": "from c"}


async def test_each_group_outputs_its_own_first_value(tmp_path: Path) -> None:
    data = {"output_type": "string", "variables": [], "advanced_settings": {
        "group_enabled": True, "groups": [
            {"group_name": "Group1", "output_type": "string",
             "variables": [["b", "text"], ["c", "text"]]},
            {"group_name": "Group2", "output_type": "number",
             "variables": [["d", "n"], ["e", "n"], ["c", "n"]]},
            {"group_name": "Group3", "output_type": "string", "variables": [["d", "text"]]},
        ]}}
    result = await execute("variable-aggregator", data, POOL, services(tmp_path))
    # a stored None is a value (the node ran and output nothing); a group with none is absent
    assert result.outputs == {"Group1": {"output": "from c"}, "Group2": {"output": None}}


async def test_nothing_ran_nothing_is_output(tmp_path: Path) -> None:
    data = {"output_type": "string", "variables": [["b", "text"]]}
    result = await execute("variable-aggregator", data, POOL, services(tmp_path))
    assert result.outputs == {}
