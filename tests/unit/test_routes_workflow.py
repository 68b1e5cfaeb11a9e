"""The workflow context's console routes on the in-memory node (tests/memory.py): workflow
and advanced-chat apps with their default drafts, saving a draft (hash guard, graph
validation, secrets), publishing and the version history, and Dify's DSL import (content,
URL through the SSRF guard, pending and confirmed, overwrite), export and their round trip
with the real exports in tests/fixtures/dify_dsl."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from gateway.auth import ConsoleUser
from gateway.workflow.drafts import start_draft_run
from projections.platform import queries as platform_queries
from schemas.conversation.naming import task_stop_key
from schemas.platform.naming import account_id_for
from schemas.workflow import events as we
from tests.chat import sse_events
from tests.harness import Node, add_account_with_workspace, served
from tests.memory import memory_app
from tests.workflows import (
    check_workflow_events,
    edge,
    end_outputs,
    graph,
    graph_node,
    text_input,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dify_dsl"
START = {"id": "start", "data": {"type": "start", "title": "Start", "variables": []}}
END = {"id": "end", "data": {"type": "end", "title": "End", "outputs": []}}


async def new_app(node: Node, auth: dict[str, str], mode: str, name: str = "Flow") -> str:
    created = await node.client.post("/console/api/apps", headers=auth,
                                     json={"name": name, "mode": mode})
    assert created.status_code == 201, created.text
    assert created.json()["mode"] == mode
    return str(created.json()["id"])


async def draft(node: Node, auth: dict[str, str], app_id: str) -> dict[str, Any]:
    got = await node.client.get(f"/console/api/apps/{app_id}/workflows/draft", headers=auth)
    assert got.status_code == 200, got.text
    return dict(got.json())


async def test_workflow_apps_start_from_their_modes_default_draft(node: Node) -> None:
    auth = await node.setup_and_login()
    workflow = await draft(node, auth, await new_app(node, auth, "workflow"))
    assert [n["data"]["type"] for n in workflow["graph"]["nodes"]] == ["start"]
    chatflow = await draft(node, auth, await new_app(node, auth, "advanced-chat"))
    assert [n["data"]["type"] for n in chatflow["graph"]["nodes"]] == ["start", "llm", "answer"]
    assert [(e["source"], e["target"]) for e in chatflow["graph"]["edges"]] == [
        ("start", "llm"), ("llm", "answer")]
    assert chatflow["version"] == "draft" and chatflow["hash"] != workflow["hash"]
    assert chatflow["features"]["retriever_resource"] == {"enabled": True}

    chat = await new_app(node, auth, "chat")
    refused = await node.client.get(f"/console/api/apps/{chat}/workflows/draft", headers=auth)
    assert refused.status_code == 404 and refused.json()["code"] == "app_not_found"


async def test_a_draft_saves_over_the_one_its_editor_loaded(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "workflow")
    url = f"/console/api/apps/{app_id}/workflows/draft"
    loaded = await draft(node, auth, app_id)
    body = {"graph": {"nodes": [START, END], "edges": [edge("start", "end")]},
            "features": {"opening_statement": "Hello"}, "hash": loaded["hash"],
            "environment_variables": [
                {"id": "v1", "name": "api_key", "value_type": "secret", "value": "s3cr3t-key"},
                {"id": "v2", "name": "region", "value_type": "string", "value": "eu"}],
            "conversation_variables": []}
    saved = await node.client.post(url, headers=auth, json=body)
    assert saved.status_code == 200, saved.text
    assert saved.json()["result"] == "success" and isinstance(saved.json()["updated_at"], int)
    shown = await draft(node, auth, app_id)
    assert shown["hash"] == saved.json()["hash"] != loaded["hash"]
    assert [n["id"] for n in shown["graph"]["nodes"]] == ["start", "end"]
    # a secret is never shown, nor recorded in plain text; sent back hidden, it stays
    assert [v["value"] for v in shown["environment_variables"]] == ["[__HIDDEN__]", "eu"]
    recorded = node.container.store.read_from(0, 100_000)
    assert recorded and not any("s3cr3t-key" in e.payload.model_dump_json() for e in recorded)
    again = await node.client.post(url, headers=auth, json={
        **body, "hash": shown["hash"], "environment_variables": shown["environment_variables"],
        "features": {"opening_statement": "Hi"}})
    assert again.status_code == 200, again.text
    exported = await node.client.get(f"/console/api/apps/{app_id}/export", headers=auth,
                                     params={"include_secret": "true"})
    variables = yaml.safe_load(exported.json()["data"])["workflow"]["environment_variables"]
    assert [v["value"] for v in variables] == ["s3cr3t-key", "eu"]

    # an editor that loaded an older draft is refused, and nothing changes
    stale = await node.client.post(url, headers=auth, json={**body, "hash": loaded["hash"]})
    assert stale.status_code == 409
    assert stale.json() == {"code": "draft_workflow_not_sync", "status": 409, "message":
                            "Workflow graph might have been modified, please refresh and "
                            "resubmit."}
    assert (await draft(node, auth, app_id))["features"] == {"opening_statement": "Hi"}


@pytest.mark.parametrize(("graph", "named"), [
    ({"nodes": [START, {"id": "n1", "data": {"type": "teleport", "title": "T"}}], "edges": []},
     "node 'n1' has an unknown type 'teleport'"),
    ({"nodes": [START], "edges": [edge("start", "ghost")]},
     "edge 'start-source-ghost' has a target 'ghost' that is not a node"),
    ({"nodes": [START, END, {"id": "x", "data": {"type": "code", "title": "X"}}],
      "edges": [edge("start", "x"), edge("x", "end"), edge("end", "x")]},
     "the graph has a cycle outside a loop or iteration: x -> end -> x"),
    ({"nodes": [END], "edges": []}, "a workflow app needs a start node"),
])
async def test_a_graph_that_cannot_run_is_refused_naming_the_node(
        node: Node, graph: dict[str, Any], named: str) -> None:
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "workflow")
    before = await draft(node, auth, app_id)
    refused = await node.client.post(f"/console/api/apps/{app_id}/workflows/draft",
                                     headers=auth, json={"graph": graph, "hash": before["hash"]})
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"code": "invalid_param", "status": 400, "message": named}
    assert await draft(node, auth, app_id) == before


async def test_publishing_freezes_the_draft_into_the_version_history(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "workflow")
    base = f"/console/api/apps/{app_id}/workflows"
    nothing = await node.client.get(f"{base}/publish", headers=auth)
    assert nothing.status_code == 200 and nothing.json() is None
    published = await node.client.post(f"{base}/publish", headers=auth,
                                       json={"marked_name": "first", "marked_comment": "ok"})
    assert published.status_code == 200, published.text
    assert published.json()["result"] == "success"
    loaded = await draft(node, auth, app_id)
    graph = {"nodes": [START, END], "edges": [edge("start", "end")]}
    assert (await node.client.post(f"{base}/draft", headers=auth, json={
        "graph": graph, "hash": loaded["hash"]})).status_code == 200
    assert (await node.client.post(f"{base}/publish", headers=auth)).status_code == 200

    current = (await node.client.get(f"{base}/publish", headers=auth)).json()
    assert current["graph"] == graph and current["version"] != "draft"
    assert current["created_by"]["email"] == "owner@example.com"
    assert (await draft(node, auth, app_id))["updated_by"]["name"] == "Owner"
    assert current["created_at"] >= published.json()["created_at"]
    page = (await node.client.get(base, headers=auth, params={"limit": 1})).json()
    assert (page["page"], page["limit"], page["has_more"]) == (1, 1, True)
    assert [v["id"] for v in page["items"]] == [current["id"]]
    rest = (await node.client.get(base, headers=auth, params={"limit": 1, "page": 2})).json()
    assert [v["marked_name"] for v in rest["items"]] == ["first"] and not rest["has_more"]
    named = (await node.client.get(base, headers=auth, params={"named_only": "true"})).json()
    assert [v["marked_comment"] for v in named["items"]] == ["ok"]
    # a published version exports as it was published, not as the draft is now
    old = await node.client.get(f"/console/api/apps/{app_id}/export", headers=auth,
                                params={"workflow_id": rest["items"][0]["id"]})
    assert [n["id"] for n in yaml.safe_load(old.json()["data"])["workflow"]["graph"]["nodes"]] \
        == ["start"]
    unknown = await node.client.get(f"/console/api/apps/{app_id}/export", headers=auth,
                                    params={"workflow_id": str(uuid4())})
    assert unknown.status_code == 404
    too_long = await node.client.post(f"{base}/publish", headers=auth,
                                      json={"marked_name": "x" * 21})
    assert too_long.status_code == 400
    assert len((await node.client.get(base, headers=auth)).json()["items"]) == 2


async def import_yaml(node: Node, auth: dict[str, str], text: str,
                      **options: Any) -> tuple[int, dict[str, Any]]:
    answer = await node.client.post("/console/api/apps/imports", headers=auth, json={
        "mode": "yaml-content", "yaml_content": text, **options})
    return answer.status_code, dict(answer.json())


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.yml")))
async def test_real_exports_import_and_export_again_unchanged(node: Node, fixture: str) -> None:
    auth = await node.setup_and_login()
    text = (FIXTURES / fixture).read_text()
    original = yaml.safe_load(text)
    status, answer = await import_yaml(node, auth, text)
    assert status == 200, answer
    # older minor DSL versions, and (for some) plugins Eddy does not have: warnings only
    assert answer["status"] == "completed-with-warnings" and answer["error"] == ""
    assert answer["app_mode"] == original["app"]["mode"]
    assert answer["imported_dsl_version"] == original["version"]
    assert answer["current_dsl_version"] == "0.5.0"
    app = (await node.client.get(f"/console/api/apps/{answer['app_id']}", headers=auth)).json()
    assert app["name"] == original["app"]["name"]
    plugin_nodes = [n["id"] for n in original["workflow"]["graph"]["nodes"]
                    if n["data"]["type"] in ("tool", "agent")]
    assert len([w for w in answer["warnings"] if "needs a plugin" in w]) == len(plugin_nodes)

    exported = await node.client.get(f"/console/api/apps/{answer['app_id']}/export",
                                     headers=auth)
    assert exported.status_code == 200, exported.text
    document = yaml.safe_load(exported.json()["data"])
    assert document["version"] == "0.5.0" and document["kind"] == "app"
    for part in ("graph", "features", "conversation_variables"):
        assert document["workflow"][part] == (original["workflow"].get(part) or
                                              ({} if part == "features" else [])), part
    assert document["dependencies"] == (original.get("dependencies") or [])
    # the editor's check for plugins the import named: none is installed here
    leaked = await node.client.get(
        f"/console/api/apps/imports/{answer['app_id']}/check-dependencies", headers=auth)
    assert leaked.json() == {"leaked_dependencies": original.get("dependencies") or []}
    status, again = await import_yaml(node, auth, exported.json()["data"])
    assert status == 200 and again["app_id"] != answer["app_id"]
    reexported = await node.client.get(f"/console/api/apps/{again['app_id']}/export",
                                       headers=auth)
    assert yaml.safe_load(reexported.json()["data"])["workflow"] == document["workflow"]


async def test_an_import_overwrites_a_workflow_apps_draft(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "workflow", name="Mine")
    text = (FIXTURES / "json_repair_workflow_0.1.2.yml").read_text()
    status, answer = await import_yaml(node, auth, text, app_id=app_id, name="Repaired")
    assert status == 200 and answer["app_id"] == app_id, answer
    assert (await draft(node, auth, app_id))["graph"] == yaml.safe_load(text)["workflow"]["graph"]
    app = (await node.client.get(f"/console/api/apps/{app_id}", headers=auth)).json()
    assert app["name"] == "Repaired"
    chatflow = (FIXTURES / "artifact_advanced_chat_0.2.0.yml").read_text()
    status, refused = await import_yaml(node, auth, chatflow, app_id=app_id)
    assert (status, refused["status"]) == (400, "failed")
    assert "advanced-chat" in refused["error"]


async def test_a_newer_dsl_waits_for_confirmation_and_bad_ones_fail(node: Node) -> None:
    auth = await node.setup_and_login()
    apps_before = (await node.client.get("/console/api/apps", headers=auth)).json()["total"]
    newer = (FIXTURES / "json_repair_workflow_0.1.2.yml").read_text().replace(
        "version: 0.1.2", "version: 0.6.0")
    status, pending = await import_yaml(node, auth, newer)
    assert (status, pending["status"], pending["app_id"]) == (202, "pending", None)
    assert pending["imported_dsl_version"] == "0.6.0"
    assert (await node.client.get("/console/api/apps", headers=auth)).json()["total"] \
        == apps_before
    rival = await add_account_with_workspace(node, "rival@example.com")
    theirs = await node.client.post(f"/console/api/apps/imports/{pending['id']}/confirm",
                                    headers=rival)
    assert (theirs.status_code, theirs.json()["status"]) == (400, "failed")
    confirmed = await node.client.post(f"/console/api/apps/imports/{pending['id']}/confirm",
                                       headers=auth)
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "completed"
    assert confirmed.json()["app_mode"] == "workflow"
    twice = await node.client.post(f"/console/api/apps/imports/{pending['id']}/confirm",
                                   headers=auth)
    assert twice.status_code == 400
    assert twice.json()["error"] == "Import information expired or does not exist"

    for text, words in [("app: [unclosed", "Invalid YAML format"),
                        ("version: '0.5.0'\napp: {name: x}", "app.mode: is required"),
                        ("version: 0.5\napp: {mode: workflow}", "must be text"),
                        ("version: '0.5.0'\napp: {mode: workflow, name: x}\nworkflow:\n"
                         "  graph: {nodes: [{id: a, data: {type: end}}], edges: []}",
                         "needs a start node")]:
        status, failed = await import_yaml(node, auth, text)
        assert (status, failed["status"]) == (400, "failed"), failed
        assert words in failed["error"]
    assert (await node.client.get("/console/api/apps", headers=auth)).json()["total"] \
        == apps_before + 1


async def test_chat_apps_round_trip_their_model_config(node: Node) -> None:
    auth = await node.setup_and_login()
    status, answer = await import_yaml(node, auth, """
version: 0.5.0
kind: app
app: {mode: chat, name: helper, icon: "🙂"}
model_config:
  pre_prompt: You help.
  opening_statement: Hello!
""")
    assert (status, answer["status"]) == (200, "completed"), answer
    exported = await node.client.get(f"/console/api/apps/{answer['app_id']}/export",
                                     headers=auth)
    document = yaml.safe_load(exported.json()["data"])
    assert document["app"]["icon"] == "🙂"
    assert (document["model_config"]["pre_prompt"],
            document["model_config"]["opening_statement"]) == ("You help.", "Hello!")


async def test_a_dsl_url_is_fetched_through_the_ssrf_guard(tmp_path: Path) -> None:
    text = (FIXTURES / "json_repair_workflow_0.1.2.yml").read_text()
    site = FastAPI()
    site.get("/app.yml")(lambda: PlainTextResponse(text))
    for name in ("guarded", "allowed"):
        (tmp_path / name).mkdir()
    async with served(site) as base:
        async with memory_app(tmp_path / "guarded") as guarded:
            auth = await guarded.setup_and_login()
            answer = await guarded.client.post("/console/api/apps/imports", headers=auth,
                                               json={"mode": "yaml-url",
                                                     "yaml_url": f"{base}/app.yml"})
            assert answer.status_code == 400 and answer.json()["status"] == "failed"
            assert "Error fetching YAML from URL" in answer.json()["error"]
        async with memory_app(tmp_path / "allowed", SSRF_ALLOWED_HOSTS="127.0.0.1") as allowed:
            auth = await allowed.setup_and_login()
            answer = await allowed.client.post("/console/api/apps/imports", headers=auth,
                                               json={"mode": "yaml-url",
                                                     "yaml_url": f"{base}/app.yml"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["app_mode"] == "workflow"
            missing = await allowed.client.post("/console/api/apps/imports", headers=auth,
                                                json={"mode": "yaml-url",
                                                      "yaml_url": f"{base}/none.yml"})
            assert missing.json()["error"] == "Error fetching YAML from URL: HTTP 404"


@pytest.mark.parametrize(("variables", "words"), [
    ({"environment_variables": [{"id": "a", "name": "n", "value_type": "number",
                                 "value": "ten"}]}, "'n' must have a number value"),
    ({"environment_variables": [{"id": "a", "name": "n", "value_type": "string", "value": ""},
                                {"id": "b", "name": "n", "value_type": "string", "value": ""}]},
     "environment variable names must be unique"),
    ({"environment_variables": [{"name": "n", "value_type": "string", "value": ""}]},
     "environment_variables.0.id: Field required"),
    ({"conversation_variables": [{"id": "c", "name": "turns", "value_type": "matrix"}]},
     "conversation_variables.0.value_type"),
])
async def test_variables_are_checked_before_anything_is_saved(
        node: Node, variables: dict[str, Any], words: str) -> None:
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "advanced-chat")
    before = await draft(node, auth, app_id)
    refused = await node.client.post(f"/console/api/apps/{app_id}/workflows/draft",
                                     headers=auth, json={"graph": before["graph"],
                                                         "hash": before["hash"], **variables})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_param"
    assert words in refused.json()["message"], refused.json()
    assert await draft(node, auth, app_id) == before


GREETING = graph(
    [graph_node("start", "start", variables=[text_input("name"), text_input("mood", False)]),
     graph_node("check", "if-else", cases=[{
         "case_id": "happy", "logical_operator": "and", "conditions": [{
             "variable_selector": ["start", "mood"], "comparison_operator": "is",
             "value": "happy"}]}]),
     graph_node("cheer", "answer", answer="Great to see you, {{#start.name#}}!"),
     graph_node("plain", "answer", answer="Hello {{#start.name#}}."),
     graph_node("end_happy", "end", outputs=end_outputs(("greeting", ["cheer", "answer"]))),
     graph_node("end_plain", "end", outputs=end_outputs(("greeting", ["plain", "answer"])))],
    [edge("start", "check"), edge("check", "cheer", "happy"), edge("check", "plain", "false"),
     edge("cheer", "end_happy"), edge("plain", "end_plain")])


async def test_the_editor_runs_its_draft_and_one_node_of_it(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "workflow")
    base = f"/console/api/apps/{app_id}/workflows"
    loaded = await draft(node, auth, app_id)
    assert (await node.client.post(f"{base}/draft", headers=auth, json={
        "graph": GREETING, "hash": loaded["hash"]})).status_code == 200

    before = node.container.store.max_position()
    ran = await node.client.post(f"{base}/draft/run", headers=auth,
                                 json={"inputs": {"name": "Ann", "mood": "happy"}})
    assert ran.status_code == 200, ran.text
    events = [e for _, e in sse_events(ran.content)]
    check_workflow_events(events)
    assert (events[0]["event"], events[-1]["event"]) == ("workflow_started",
                                                         "workflow_finished")
    assert events[-1]["data"]["outputs"] == {"greeting": "Great to see you, Ann!"}
    # it ran a snapshot of the draft, as a debug run; nothing was published
    recorded = [e.payload for e in node.container.store.read_from(before, 1000)]
    snapshot = next(p for p in recorded if isinstance(p, we.WorkflowVersionCreated))
    started = next(p for p in recorded if isinstance(p, we.WorkflowRunStarted))
    assert (snapshot.kind, snapshot.graph) == ("draft", GREETING)
    assert (started.workflow_id, started.triggered_from) == (
        UUID(events[0]["data"]["workflow_id"]), "debugging")
    assert (await node.client.get(base, headers=auth)).json()["items"] == []

    # inputs are checked against the draft's start node before anything is recorded
    before = node.container.store.max_position()
    missing = await node.client.post(f"{base}/draft/run", headers=auth, json={"inputs": {}})
    assert missing.status_code == 400 and missing.json()["code"] == "invalid_param"
    assert node.container.store.max_position() == before

    one = await node.client.post(f"{base}/draft/nodes/check/run", headers=auth,
                                 json={"inputs": {"#start.mood#": "happy"}})
    assert one.status_code == 200, one.text
    assert (one.json()["node_id"], one.json()["status"]) == ("check", "succeeded")
    assert one.json()["outputs"] == {"result": True, "selected_case_id": "happy"}
    ghost = await node.client.post(f"{base}/draft/nodes/ghost/run", headers=auth,
                                   json={"inputs": {}})
    assert ghost.status_code == 404 and ghost.json()["message"] == \
        "Node not found in the workflow."

    chatflow = await new_app(node, auth, "advanced-chat")
    elsewhere = await node.client.post(f"/console/api/apps/{chatflow}/workflows/draft/run",
                                       headers=auth, json={"inputs": {}})
    assert elsewhere.status_code == 404


async def test_a_debug_run_is_stopped_from_the_console(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, other = await new_app(node, auth, "workflow"), await new_app(node, auth, "workflow")
    owner = account_id_for("owner@example.com")
    tenant = await platform_queries.current_workspace_of(node.container.engine, owner)
    assert tenant is not None
    app = await platform_queries.app_in_workspace(node.container.engine, tenant, UUID(app_id))
    assert app is not None
    # the start alone (the run itself ends at once here): what the stop route acts on
    run = await start_draft_run(Request({"type": "http", "app": node.app}),
                                ConsoleUser(account_id=owner, tenant_id=tenant, name="Owner",
                                            role="owner"),
                                app, {}, [], node_id="start")
    assert run.started
    stop = f"workflow-runs/tasks/{run.task_id}/stop"
    ignored = await node.client.post(f"/console/api/apps/{other}/{stop}", headers=auth)
    assert ignored.json() == {"result": "success"}
    assert await node.container.kv.get(task_stop_key(run.task_id)) is None
    stopped = await node.client.post(f"/console/api/apps/{app_id}/{stop}", headers=auth)
    assert stopped.json() == {"result": "success"}
    assert await node.container.kv.get(task_stop_key(run.task_id)) is not None


async def test_a_debug_run_uses_the_drafts_secrets_and_never_shows_them(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "workflow")
    base = f"/console/api/apps/{app_id}/workflows"
    flow = graph([graph_node("start", "start", variables=[]),
                  graph_node("say", "answer", answer="{{#env.region#}}:{{#env.api_key#}}"),
                  graph_node("end", "end", outputs=end_outputs(("said", ["say", "answer"])))],
                 [edge("start", "say"), edge("say", "end")])
    loaded = await draft(node, auth, app_id)
    saved = await node.client.post(f"{base}/draft", headers=auth, json={
        "graph": flow, "hash": loaded["hash"], "environment_variables": [
            {"id": "k", "name": "api_key", "value_type": "secret", "value": "s3cr3t-value"},
            {"id": "r", "name": "region", "value_type": "string", "value": "eu"}]})
    assert saved.status_code == 200, saved.text
    ran = await node.client.post(f"{base}/draft/run", headers=auth, json={"inputs": {}})
    events = [e for _, e in sse_events(ran.content)]
    # opened for the run (the answer has it), masked wherever it leaves the engine
    assert events[-1]["data"]["outputs"] == {"said": "eu:******"}
    assert "s3cr3t-value" not in ran.text


async def test_a_debug_runs_files_are_the_mappings_nodes_read(node: Node) -> None:
    """As the Service API's runs: a file input and `files` (`sys.files`) become Dify's file
    mappings before the run is recorded; an upload the user does not have is a 404 with
    nothing recorded."""
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "workflow")
    base = f"/console/api/apps/{app_id}/workflows"
    flow = graph([graph_node("start", "start", variables=[
        {"variable": "doc", "label": "doc", "type": "file", "required": True,
         "allowed_file_types": ["document"], "allowed_file_upload_methods": ["remote_url"]}]),
                  graph_node("end", "end", outputs=end_outputs(
                      ("doc", ["start", "doc"]), ("all", ["sys", "files"])))],
                 [edge("start", "end")])
    loaded = await draft(node, auth, app_id)
    assert (await node.client.post(f"{base}/draft", headers=auth, json={
        "graph": flow, "hash": loaded["hash"]})).status_code == 200
    remote = {"type": "document", "transfer_method": "remote_url",
              "url": "https://example.com/report.pdf"}
    ran = await node.client.post(f"{base}/draft/run", headers=auth,
                                 json={"inputs": {"doc": remote}, "files": [remote]})
    assert ran.status_code == 200, ran.text
    outputs = [e for _, e in sse_events(ran.content)][-1]["data"]["outputs"]
    for file in (outputs["doc"], *outputs["all"]):
        assert (file["dify_model_identity"], file["transfer_method"], file["remote_url"],
                file["filename"]) == ("__dify__file__", "remote_url",
                                      "https://example.com/report.pdf", "report.pdf")

    before = node.container.store.max_position()
    unknown = {"type": "document", "transfer_method": "local_file",
               "upload_file_id": str(uuid4())}
    refused = await node.client.post(f"{base}/draft/run", headers=auth,
                                     json={"inputs": {"doc": remote}, "files": [unknown]})
    assert refused.status_code == 404, refused.text
    assert node.container.store.max_position() == before


async def test_a_paused_debug_run_stopped_from_the_console_ends_stopped(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id = await new_app(node, auth, "workflow")
    base = f"/console/api/apps/{app_id}/workflows"
    flow = graph([graph_node("start", "start", variables=[]),
                  graph_node("review", "human-input", "Review", form_content="Go on?",
                             inputs=[], user_actions=[{"id": "go", "title": "Go"}],
                             timeout=1, timeout_unit="hour"),
                  graph_node("end", "end", outputs=[])],
                 [edge("start", "review"), edge("review", "end", "go")])
    loaded = await draft(node, auth, app_id)
    assert (await node.client.post(f"{base}/draft", headers=auth, json={
        "graph": flow, "hash": loaded["hash"]})).status_code == 200
    ran = await node.client.post(f"{base}/draft/run", headers=auth, json={"inputs": {}})
    events = [e for _, e in sse_events(ran.content)]
    assert events[-1]["event"] == "workflow_paused", events[-1]
    stopped = await node.client.post(
        f"/console/api/apps/{app_id}/workflow-runs/tasks/{events[0]['task_id']}/stop",
        headers=auth)
    assert stopped.json() == {"result": "success"}
    run = node.container.store.load(UUID(events[0]["workflow_run_id"]))
    assert run[-1].type == "WorkflowRunStopped"
