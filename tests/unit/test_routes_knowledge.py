"""The knowledge context's routes on the in-memory node (tests/memory.py), as far as SQLite
can answer them: knowledge tags, through the real FastAPI app (answers checked against
Dify's spec by the client's hook). Dataset and document views aggregate their tags and
metadata with Postgres JSONB (projections/knowledge/meta_queries.py), so every route that
shows or looks up a dataset stays in tests/e2e."""

from __future__ import annotations

from tests.harness import Node


async def dataset_key(node: Node) -> dict[str, str]:
    auth = await node.setup_and_login()
    token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
    return {"Authorization": f"Bearer {token['token']}"}


async def test_tags_are_created_found_renamed_and_deleted(node: Node) -> None:
    key = await dataset_key(node)
    created = [await node.client.post("/v1/datasets/tags", headers=key, json={"name": name})
               for name in ("hr", "finance")]
    assert [t.status_code for t in created] == [200, 200], created[0].text
    hr = created[0].json()
    assert (hr["name"], hr["type"], hr["binding_count"]) == ("hr", "knowledge", "0")

    listed = (await node.client.get("/v1/datasets/tags", headers=key)).json()
    assert {t["name"] for t in listed} == {"hr", "finance"}
    found = (await node.client.get("/v1/datasets/tags", headers=key,
                                   params={"keyword": "FIN"})).json()
    assert [t["name"] for t in found] == ["finance"]

    renamed = await node.client.patch("/v1/datasets/tags", headers=key,
                                      json={"tag_id": hr["id"], "name": "people"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "people"
    deleted = await node.client.request("DELETE", "/v1/datasets/tags", headers=key,
                                        json={"tag_id": hr["id"]})
    assert deleted.status_code == 204
    assert [t["name"] for t in (await node.client.get("/v1/datasets/tags",
                                                      headers=key)).json()] == ["finance"]


async def test_bad_tag_requests_get_dify_errors_and_change_nothing(node: Node) -> None:
    key = await dataset_key(node)
    unnamed = await node.client.post("/v1/datasets/tags", headers=key, json={"name": ""})
    assert unnamed.status_code == 400 and unnamed.json()["code"] == "invalid_param"
    unknown = await node.client.patch("/v1/datasets/tags", headers=key, json={
        "tag_id": "00000000-0000-0000-0000-000000000000", "name": "x"})
    assert unknown.status_code == 404, unknown.text
    assert (await node.client.get("/v1/datasets/tags", headers=key)).json() == []
    assert (await node.client.get("/v1/datasets/tags")).status_code == 401
