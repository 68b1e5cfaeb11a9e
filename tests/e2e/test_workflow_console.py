"""Workflow apps over HTTP on Postgres and Redis (migration 0019's tables): each real Dify
export in tests/fixtures/dify_dsl imported, published and exported again without loss, and
another workspace seeing none of it."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.harness import Node, add_account_with_workspace

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
