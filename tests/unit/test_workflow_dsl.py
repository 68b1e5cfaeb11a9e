"""Dify's app DSL: real exports of several versions and modes read, bad documents refused
with an error naming the field, exports that read back the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow_graph.dsl import (
    CURRENT_DSL_VERSION,
    AppMode,
    ImportStatus,
    dump_dsl,
    load_dsl,
    version_status,
)
from workflow_graph.errors import DslError
from workflow_graph.graph import validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dify_dsl"
EXPORTS = sorted(FIXTURES.glob("*.yml"))


def test_fixtures_cover_several_versions_and_modes() -> None:
    read = [load_dsl(p.read_text()) for p in EXPORTS]
    assert {d.version for d in read} >= {"0.1.0", "0.1.2", "0.1.5", "0.2.0"}
    assert {d.mode for d in read} == {AppMode.WORKFLOW, AppMode.ADVANCED_CHAT}


@pytest.mark.parametrize("path", EXPORTS, ids=lambda p: p.name)
def test_real_exports_read_and_validate(path: Path) -> None:
    dsl = load_dsl(path.read_text())
    assert dsl.workflow is not None
    graph = dsl.workflow.graph
    assert graph.start_node() is not None
    warnings = validate(graph, dsl.mode)
    agents = [n.id for n in graph.nodes if n.type == "agent"]
    assert [w.node_id for w in warnings] == agents
    assert all("needs a plugin" in w.message for w in warnings)
    assert dsl.status is ImportStatus.COMPLETED_WITH_WARNINGS  # all older minors than 0.4


def test_a_real_export_gives_its_nodes_edges_and_branch_handles() -> None:
    dsl = load_dsl((FIXTURES / "tod_agent_advanced_chat_0.1.5.yml").read_text())
    assert dsl.workflow is not None
    graph = dsl.workflow.graph
    assert [n.type for n in graph.nodes] == ["start", "agent", "answer", "if-else", "llm",
                                             "answer"]
    branch = graph.outgoing("1742523610643")
    assert {(e.source_handle, e.target) for e in branch} == {("false", "answer"),
                                                             ("true", "1742523618478")}


@pytest.mark.parametrize("path", EXPORTS, ids=lambda p: p.name)
def test_export_reads_back_the_same_app(path: Path) -> None:
    dsl = load_dsl(path.read_text())
    again = load_dsl(dump_dsl(dsl))
    assert again.version == CURRENT_DSL_VERSION
    assert (again.mode, again.name, again.app) == (dsl.mode, dsl.name, dsl.app)
    assert dsl.workflow is not None and again.workflow is not None
    assert again.workflow.graph == dsl.workflow.graph
    assert again.workflow.features == dsl.workflow.features


def test_secret_environment_variables_are_blanked_on_export_unless_asked() -> None:
    text = """
version: 0.3.0
kind: app
app: {mode: workflow, name: secrets}
workflow:
  environment_variables:
    - {name: api_key, value: s3cr3t, value_type: secret}
    - {name: region, value: eu, value_type: string}
  graph:
    nodes: [{id: s, data: {type: start, title: Start}}]
    edges: []
"""
    dsl = load_dsl(text)
    assert dsl.status is ImportStatus.COMPLETED_WITH_WARNINGS
    exported = load_dsl(dump_dsl(dsl)).workflow
    assert exported is not None
    assert [(v.name, v.value) for v in exported.environment_variables] == [("api_key", ""),
                                                                           ("region", "eu")]
    kept = load_dsl(dump_dsl(dsl, include_secrets=True)).workflow
    assert kept is not None and kept.environment_variables[0].value == "s3cr3t"


def test_chat_apps_carry_their_model_config() -> None:
    dsl = load_dsl("""
version: 0.5.0
kind: app
app: {mode: chat, name: helper}
model_config:
  model: {provider: openai, name: gpt-4o-mini, mode: chat}
  pre_prompt: You help.
""")
    assert dsl.mode is AppMode.CHAT and dsl.workflow is None
    assert dsl.model_config is not None and dsl.model_config["pre_prompt"] == "You help."
    assert dsl.status is ImportStatus.COMPLETED
    assert load_dsl(dump_dsl(dsl)).model_config == dsl.model_config


def test_missing_version_and_kind_default_as_in_dify() -> None:
    dsl = load_dsl("app: {mode: completion, name: c}\nmodel_config: {pre_prompt: hi}\n")
    assert dsl.version == "0.1.0"


@pytest.mark.parametrize(("text", "path", "words"), [
    ("app: [\n", "", "Invalid YAML"),
    ("- a list\n", "", "must be a mapping"),
    ("version: 0.1\napp: {mode: workflow}\n", "version", "must be text"),
    ("version: banana\napp: {mode: workflow}\n", "version", "not a version"),
    ("version: 0.1.5\n", "app", "Missing app data"),
    ("app: {name: x}\n", "app.mode", "is required"),
    ("app: {mode: spreadsheet}\n", "app.mode", "'spreadsheet' is not one of"),
    ("app: {mode: workflow}\n", "workflow", "Missing workflow data"),
    ("app: {mode: chat}\n", "model_config", "Missing model_config"),
    ("app: {mode: workflow}\nworkflow: {graph: {nodes: [{id: a}]}}\n",
     "workflow.graph.nodes[0].data", "must be a mapping"),
    ("app: {mode: workflow}\nworkflow: {graph: {nodes: [], edges: [{source: a}]}}\n",
     "workflow.graph.edges[0].target", "non-empty string"),
    ("app: {mode: workflow}\nworkflow: {graph: {}, environment_variables: [{value: 1}]}\n",
     "workflow.environment_variables[0].name", "non-empty string"),
])
def test_bad_documents_name_the_field(text: str, path: str, words: str) -> None:
    with pytest.raises(DslError) as caught:
        load_dsl(text)
    assert caught.value.path == path
    assert words in str(caught.value)


@pytest.mark.parametrize(("version", "status"), [
    ("0.4.0", ImportStatus.COMPLETED),
    ("0.4.3", ImportStatus.PENDING),  # any newer version, a patch too (Dify's rule)
    ("0.1.5", ImportStatus.COMPLETED_WITH_WARNINGS),
    ("0.3.1", ImportStatus.COMPLETED_WITH_WARNINGS),
    ("0.5.0", ImportStatus.PENDING),  # newer than Eddy: the user confirms
    ("1.0.0", ImportStatus.PENDING),
])
def test_version_status_as_dify_decides_it(version: str, status: ImportStatus) -> None:
    assert version_status(version, "0.4.0") is status


def test_an_older_major_version_waits_for_confirmation() -> None:
    assert version_status("0.9.0", "1.0.0") is ImportStatus.PENDING
