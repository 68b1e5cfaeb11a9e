"""Workflow apps over HTTP on Postgres and Redis (migration 0019's tables): each real Dify
export in tests/fixtures/dify_dsl imported, published and exported again without loss,
another workspace seeing none of it; a draft edited, debug-run, published and run by the
Service API."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from tests.chat import sse_events
from tests.harness import Node, add_account_with_workspace, served
from tests.workflows import (
    check_workflow_events,
    edge,
    end_outputs,
    graph,
    graph_node,
    text_input,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dify_dsl"


async def test_real_exports_import_publish_and_export_without_loss(node: Node) -> None:
    auth = await node.setup_and_login()
    for path in sorted(FIXTURES.glob("*.yml")):
        original = yaml.safe_load(path.read_text())
        imported = await node.client.post("/console/api/apps/imports", headers=auth, json={
            "mode": "yaml-content", "yaml_content": path.read_text()})
        assert imported.status_code == 200, (path.name, imported.text)
        app_id = imported.json()["app_id"]
        base = f"/console/api/apps/{app_id}/workflows"
        published = await node.client.post(f"{base}/publish", headers=auth,
                                           json={"marked_name": "imported"})
        assert published.status_code == 200, published.text
        running = (await node.client.get(f"{base}/publish", headers=auth)).json()
        assert running["graph"] == original["workflow"]["graph"], path.name
        assert running["marked_name"] == "imported"
        versions = (await node.client.get(base, headers=auth)).json()
        assert [v["id"] for v in versions["items"]] == [running["id"]]

        exported = await node.client.get(f"/console/api/apps/{app_id}/export", headers=auth)
        document = yaml.safe_load(exported.json()["data"])
        assert document["workflow"]["graph"] == original["workflow"]["graph"], path.name
        again = await node.client.post("/console/api/apps/imports", headers=auth, json={
            "mode": "yaml-content", "yaml_content": exported.json()["data"]})
        assert again.status_code == 200, again.text
        draft = (await node.client.get(
            f"/console/api/apps/{again.json()['app_id']}/workflows/draft", headers=auth)).json()
        assert draft["graph"] == original["workflow"]["graph"], path.name

    rival = await add_account_with_workspace(node, "rival@example.com")
    for path in ("workflows/draft", "workflows/publish", "workflows", "export"):
        hidden = await node.client.get(f"/console/api/apps/{app_id}/{path}", headers=rival)
        assert hidden.status_code == 404, (path, hidden.text)


async def test_edited_debugged_published_then_run_by_the_service_api(node: Node) -> None:
    """The console's whole loop over real HTTP: save a draft, debug-run it (streamed),
    publish it, and the app's key runs the published version."""
    flow = graph([graph_node("start", "start", variables=[text_input("name")]),
                  graph_node("hello", "answer", answer="Hello {{#start.name#}}!"),
                  graph_node("end", "end", outputs=end_outputs(("greeting", ["hello", "answer"])))],
                 [edge("start", "hello"), edge("hello", "end")])
    auth = await node.setup_and_login()
    async with served(node.app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = await http.post("/console/api/apps", headers=auth,
                                  json={"name": "Greeter", "mode": "workflow"})
        app_id = created.json()["id"]
        base = f"/console/api/apps/{app_id}/workflows"
        loaded = (await http.get(f"{base}/draft", headers=auth)).json()
        saved = await http.post(f"{base}/draft", headers=auth,
                                json={"graph": flow, "hash": loaded["hash"]})
        assert saved.status_code == 200, saved.text
        async with http.stream("POST", f"{base}/draft/run", headers=auth,
                               json={"inputs": {"name": "Ann"}}) as debug:
            assert debug.headers["content-type"].startswith("text/event-stream")
            events = [e for _, e in sse_events(b"".join([c async for c in debug.aiter_bytes()]))]
        check_workflow_events(events)
        assert events[-1]["data"]["outputs"] == {"greeting": "Hello Ann!"}
        assert (await http.post(f"{base}/publish", headers=auth)).status_code == 200

        token = (await http.post(f"/console/api/apps/{app_id}/api-keys",
                                 headers=auth)).json()["token"]
        ran = await http.post("/v1/workflows/run", headers={"Authorization": f"Bearer {token}"},
                              json={"inputs": {"name": "Bob"}, "user": "bob",
                                    "response_mode": "blocking"})
        assert ran.status_code == 200, ran.text
        assert ran.json()["data"]["outputs"] == {"greeting": "Hello Bob!"}
        published = (await http.get(f"{base}/publish", headers=auth)).json()
        assert ran.json()["data"]["workflow_id"] == published["id"]
