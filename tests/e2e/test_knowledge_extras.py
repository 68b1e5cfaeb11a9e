"""Knowledge tags, dataset metadata (with metadata filtering in retrieval) and child chunks
end to end over HTTP, in the shapes of Dify's Service API spec."""

# ruff: noqa: F811 - the `node` fixture is imported, and tests take it by that name

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import httpx

from schemas.knowledge.naming import vector_collection
from tests.e2e.test_knowledge import (  # noqa: F401 - `node`: the S3-backed node fixture
    FACTS,
    create_dataset,
    create_text_document,
    dataset_key,
    node,
    wait_indexed,
)
from tests.harness import Node, add_account_with_workspace, eventually
from tests.process_rules import HIERARCHICAL_RULE

MISSING = "00000000-0000-0000-0000-000000000000"


def _error(r: httpx.Response, status: int, code: str, message: str | None = None) -> None:
    body = r.json()
    assert (r.status_code, body["code"], body["status"]) == (status, code, status), r.text
    if message is not None:
        assert body["message"] == message, r.text


async def _rival_key(node: Node) -> dict[str, str]:
    """A dataset key of a second workspace."""
    auth = await add_account_with_workspace(node, "rival@example.com")
    token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
    return {"Authorization": f"Bearer {token['token']}"}


# --- tags ---------------------------------------------------------------------------------------


async def test_knowledge_tags(node: Node) -> None:
    key = await dataset_key(node)
    c = node.client
    a, b = await create_dataset(node, key, "A"), await create_dataset(node, key, "B")

    created = await c.post("/v1/datasets/tags", headers=key, json={"name": "Product Docs"})
    assert created.status_code == 200, created.text
    docs_tag = created.json()
    assert docs_tag == {"id": docs_tag["id"], "name": "Product Docs", "type": "knowledge",
                        "binding_count": "0"}
    # Dify answers a duplicate name with 400 invalid_param
    _error(await c.post("/v1/datasets/tags", headers=key, json={"name": "Product Docs"}),
           400, "invalid_param", "Tag name already exists")
    _error(await c.post("/v1/datasets/tags", headers=key, json={"name": ""}),
           400, "invalid_param")
    # concurrent creates of one name: exactly one wins (the store keeps names unique)
    racing = await asyncio.gather(*(c.post("/v1/datasets/tags", headers=key,
                                           json={"name": "Race"}) for _ in range(3)))
    assert sorted(r.status_code for r in racing) == [200, 400, 400]
    race_id = next(r.json()["id"] for r in racing if r.status_code == 200)
    await c.request("DELETE", "/v1/datasets/tags", headers=key, json={"tag_id": race_id})
    internal = (await c.post("/v1/datasets/tags", headers=key, json={"name": "Internal"})).json()
    listed = (await c.get("/v1/datasets/tags", headers=key)).json()
    assert [t["name"] for t in listed] == ["Internal", "Product Docs"]  # newest first

    # binding: unknown and malformed tag ids are ignored
    bound = await c.post("/v1/datasets/tags/binding", headers=key, json={
        "tag_ids": [docs_tag["id"], internal["id"], str(uuid4()), "junk"],
        "target_id": a["id"]})
    assert bound.status_code == 204, bound.text
    await c.post("/v1/datasets/tags/binding", headers=key, json={
        "tag_ids": [docs_tag["id"]], "target_id": b["id"]})
    a_tags = (await c.get(f"/v1/datasets/{a['id']}/tags", headers=key)).json()
    assert a_tags == {"data": [{"id": docs_tag["id"], "name": "Product Docs"},
                               {"id": internal["id"], "name": "Internal"}], "total": 2}
    assert (await c.get(f"/v1/datasets/{a['id']}", headers=key)).json()["tags"] == [
        {"id": docs_tag["id"], "name": "Product Docs", "type": "knowledge"},
        {"id": internal["id"], "name": "Internal", "type": "knowledge"}]
    counts = {t["name"]: t["binding_count"]
              for t in (await c.get("/v1/datasets/tags", headers=key)).json()}
    assert counts == {"Product Docs": "2", "Internal": "1"}

    async def names(query: str) -> list[str]:
        r = await c.get(f"/v1/datasets?{query}", headers=key)
        assert r.status_code == 200, r.text
        return sorted(d["name"] for d in r.json()["data"])
    assert await names(f"tag_ids={internal['id']}") == ["A"]
    assert await names(f"tag_ids={docs_tag['id']}") == ["A", "B"]
    assert await names(f"tag_ids={internal['id']}&tag_ids={docs_tag['id']}") == ["A", "B"]
    assert await names(f"tag_ids={uuid4()}") == []
    assert await names("tag_ids=junk") == []
    listed_a = [d for d in (await c.get("/v1/datasets", headers=key)).json()["data"]
                if d["id"] == a["id"]]
    assert [t["name"] for t in listed_a[0]["tags"]] == ["Product Docs", "Internal"]

    # rename: unique names, and the old name becomes free
    _error(await c.patch("/v1/datasets/tags", headers=key, json={
        "tag_id": docs_tag["id"], "name": "Internal"}), 400, "invalid_param",
        "Tag name already exists")
    renamed = await c.patch("/v1/datasets/tags", headers=key, json={
        "tag_id": docs_tag["id"], "name": "Docs"})
    assert renamed.json() == {"id": docs_tag["id"], "name": "Docs", "type": "knowledge",
                              "binding_count": "2"}
    reused = await c.post("/v1/datasets/tags", headers=key, json={"name": "Product Docs"})
    assert reused.status_code == 200 and reused.json()["id"] != docs_tag["id"]
    for tag_id in (MISSING, "junk"):
        _error(await c.patch("/v1/datasets/tags", headers=key, json={
            "tag_id": tag_id, "name": "X"}), 404, "not_found", "Tag not found")

    # unbinding, with the deprecated single tag_id
    unbound = await c.post("/v1/datasets/tags/unbinding", headers=key, json={
        "tag_id": internal["id"], "target_id": a["id"]})
    assert unbound.status_code == 204
    assert [t["id"] for t in (await c.get(f"/v1/datasets/{a['id']}/tags",
                                          headers=key)).json()["data"]] == [docs_tag["id"]]
    _error(await c.post("/v1/datasets/tags/unbinding", headers=key, json={
        "target_id": a["id"]}), 400, "invalid_param")
    # an unknown target is 404 and binds nothing
    for target in (MISSING, "junk"):
        _error(await c.post("/v1/datasets/tags/binding", headers=key, json={
            "tag_ids": [internal["id"]], "target_id": target}), 404, "not_found")
    _error(await c.get(f"/v1/datasets/{MISSING}/tags", headers=key), 404, "not_found")

    # another workspace sees none of it, and cannot touch it
    rival = await _rival_key(node)
    assert (await c.get("/v1/datasets/tags", headers=rival)).json() == []
    _error(await c.patch("/v1/datasets/tags", headers=rival, json={
        "tag_id": docs_tag["id"], "name": "Mine"}), 404, "not_found")
    _error(await c.request("DELETE", "/v1/datasets/tags", headers=rival, json={
        "tag_id": docs_tag["id"]}), 404, "not_found")
    _error(await c.post("/v1/datasets/tags/binding", headers=rival, json={
        "tag_ids": [docs_tag["id"]], "target_id": a["id"]}), 404, "not_found")
    theirs = await create_dataset(node, rival, "Theirs")
    # the same name is free in another workspace
    assert (await c.post("/v1/datasets/tags", headers=rival,
                         json={"name": "Docs"})).status_code == 200
    await c.post("/v1/datasets/tags/binding", headers=rival, json={
        "tag_ids": [docs_tag["id"]], "target_id": theirs["id"]})
    assert (await c.get(f"/v1/datasets/{theirs['id']}/tags", headers=rival)).json()[
        "total"] == 0
    counts = {t["name"]: t["binding_count"]
              for t in (await c.get("/v1/datasets/tags", headers=key)).json()}
    assert counts == {"Docs": "2", "Internal": "0", "Product Docs": "0"}

    # deleting a dataset drops its bindings; deleting a tag keeps its datasets
    assert (await c.delete(f"/v1/datasets/{b['id']}", headers=key)).status_code == 204
    counts = {t["name"]: t["binding_count"]
              for t in (await c.get("/v1/datasets/tags", headers=key)).json()}
    assert counts["Docs"] == "1"
    deleted = await c.request("DELETE", "/v1/datasets/tags", headers=key,
                              json={"tag_id": docs_tag["id"]})
    assert deleted.status_code == 204
    assert (await c.get(f"/v1/datasets/{a['id']}/tags", headers=key)).json() == {
        "data": [], "total": 0}
    assert (await c.get(f"/v1/datasets/{a['id']}", headers=key)).status_code == 200
    assert "Docs" not in [t["name"] for t in (await c.get("/v1/datasets/tags",
                                                          headers=key)).json()]
    _error(await c.request("DELETE", "/v1/datasets/tags", headers=key,
                           json={"tag_id": docs_tag["id"]}), 404, "not_found")


# --- metadata -----------------------------------------------------------------------------------


async def test_dataset_metadata(node: Node) -> None:
    key = await dataset_key(node)
    c = node.client
    dataset = await create_dataset(node, key, "Meta", technique="economy")
    other = await create_dataset(node, key, "Other", technique="economy")
    base = f"/v1/datasets/{dataset['id']}"
    add = create_text_document
    doc1 = (await add(node, key, dataset["id"], "alpha", "Alpha text."))["document"]
    doc2 = (await add(node, key, dataset["id"], "beta", "Beta text."))["document"]
    foreign = (await add(node, key, other["id"], "gamma", "Gamma text."))["document"]

    r = await c.post(f"{base}/metadata", headers=key, json={"type": "string",
                                                           "name": "category"})
    assert r.status_code == 201, r.text
    category = r.json()
    assert category == {"id": category["id"], "name": "category", "type": "string"}
    priority = (await c.post(f"{base}/metadata", headers=key, json={
        "type": "number", "name": "priority"})).json()
    published = (await c.post(f"{base}/metadata", headers=key, json={
        "type": "time", "name": "published"})).json()
    _error(await c.post(f"{base}/metadata", headers=key, json={
        "type": "string", "name": "category"}), 400, "invalid_param",
        "Metadata name already exists.")
    _error(await c.post(f"{base}/metadata", headers=key, json={
        "type": "string", "name": "document_name"}), 400, "invalid_param",
        "Metadata name already exists in Built-in fields.")
    _error(await c.post(f"{base}/metadata", headers=key, json={
        "type": "string", "name": "x" * 256}), 400, "invalid_param",
        "Metadata name cannot exceed 255 characters.")
    _error(await c.post(f"{base}/metadata", headers=key, json={
        "type": "boolean", "name": "flag"}), 400, "invalid_param")
    _error(await c.post(f"/v1/datasets/{MISSING}/metadata", headers=key, json={
        "type": "string", "name": "x"}), 404, "not_found")
    # names are unique per dataset only
    assert (await c.post(f"/v1/datasets/{other['id']}/metadata", headers=key, json={
        "type": "string", "name": "category"})).status_code == 201

    assert (await c.get(f"{base}/metadata/built-in", headers=key)).json() == {"fields": [
        {"name": "document_name", "type": "string"}, {"name": "uploader", "type": "string"},
        {"name": "upload_date", "type": "time"}, {"name": "last_update_date", "type": "time"},
        {"name": "source", "type": "string"}]}

    # values for documents, all in one batch
    r = await c.post(f"{base}/documents/metadata", headers=key, json={"operation_data": [
        {"document_id": doc1["id"], "metadata_list": [
            {"id": category["id"], "name": "category", "value": "x"},
            {"id": priority["id"], "name": "priority", "value": "3"},
            {"id": published["id"], "name": "published", "value": "2024-05-01T00:00:00Z"}]},
        {"document_id": doc2["id"], "metadata_list": [
            {"id": category["id"], "name": "category", "value": "y"}]}]})
    assert (r.status_code, r.json()) == (200, {"result": "success"}), r.text

    async def values(doc_id: str) -> dict[str, Any]:
        d = (await c.get(f"{base}/documents/{doc_id}", headers=key)).json()
        return {m["name"]: (m["type"], m["value"]) for m in d["doc_metadata"]}

    doc = (await c.get(f"{base}/documents/{doc1['id']}", headers=key)).json()
    assert doc["doc_metadata"] == [
        {"id": category["id"], "name": "category", "type": "string", "value": "x"},
        {"id": priority["id"], "name": "priority", "type": "number", "value": 3},
        {"id": published["id"], "name": "published", "type": "time", "value": 1714521600}]
    listed = (await c.get(f"{base}/documents", headers=key)).json()["data"]
    assert {d["name"]: len(d["doc_metadata"]) for d in listed} == {"alpha": 3, "beta": 1}
    assert (await c.get(f"{base}/metadata", headers=key)).json() == {"doc_metadata": [
        {**category, "count": 2}, {**priority, "count": 1}, {**published, "count": 1}],
        "built_in_field_enabled": False}
    assert (await c.get(base, headers=key)).json()["doc_metadata"] == [
        category, priority, published]

    # partial_update keeps the other values; a full update replaces them
    await c.post(f"{base}/documents/metadata", headers=key, json={"operation_data": [
        {"document_id": doc2["id"], "partial_update": True, "metadata_list": [
            {"id": priority["id"], "name": "priority", "value": 5}]},
        {"document_id": doc1["id"], "metadata_list": [
            {"id": category["id"], "name": "category", "value": "x"},
            {"id": priority["id"], "name": "priority", "value": 3.5}]}]})
    assert await values(doc2["id"]) == {"category": ("string", "y"),
                                        "priority": ("number", 5)}
    assert await values(doc1["id"]) == {"category": ("string", "x"),
                                        "priority": ("number", 3.5)}

    # bad batches change nothing: not even the valid operations before the bad one
    before = (await values(doc1["id"]), await values(doc2["id"]))
    bad_batches: list[tuple[list[dict[str, Any]], str]] = [
        ([{"document_id": doc1["id"], "metadata_list": [
            {"id": category["id"], "name": "category", "value": "z"}]},
          {"document_id": doc2["id"], "metadata_list": [
              {"id": priority["id"], "name": "priority", "value": "lots"}]}],
         "Metadata 'priority' is a number; got 'lots'."),
        ([{"document_id": doc1["id"], "metadata_list": [
            {"id": category["id"], "name": "category", "value": "z"}]},
          {"document_id": foreign["id"], "metadata_list": []}], "Document not found."),
        ([{"document_id": MISSING, "metadata_list": []}], "Document not found."),
        ([{"document_id": doc1["id"], "metadata_list": [
            {"id": str(uuid4()), "name": "ghost", "value": "z"}]}], ""),
        ([{"document_id": doc1["id"], "metadata_list": [
            {"id": published["id"], "name": "published", "value": "not a date"}]}], ""),
    ]
    for operations, message in bad_batches:
        r = await c.post(f"{base}/documents/metadata", headers=key,
                         json={"operation_data": operations})
        _error(r, 400, "invalid_param", message or None)
    assert (await values(doc1["id"]), await values(doc2["id"])) == before

    # rename (unique among the dataset's fields); documents show the new name
    renamed = await c.patch(f"{base}/metadata/{category['id']}", headers=key,
                            json={"name": "kind"})
    assert renamed.json() == {"id": category["id"], "name": "kind", "type": "string"}
    assert (await values(doc2["id"]))["kind"] == ("string", "y")
    _error(await c.patch(f"{base}/metadata/{category['id']}", headers=key,
                         json={"name": "priority"}), 400, "invalid_param",
           "Metadata name already exists.")
    other_field = (await c.get(f"/v1/datasets/{other['id']}/metadata",
                               headers=key)).json()["doc_metadata"][0]
    for missing in (MISSING, "junk", other_field["id"]):  # another dataset's field: 404
        _error(await c.patch(f"{base}/metadata/{missing}", headers=key,
                             json={"name": "z"}), 404, "not_found")
        _error(await c.delete(f"{base}/metadata/{missing}", headers=key), 404, "not_found")
    assert (await c.get(f"/v1/datasets/{other['id']}/metadata", headers=key)).json()[
        "doc_metadata"][0]["name"] == "category"

    # built-in fields: listed with the dataset and shown on documents when enabled
    r = await c.post(f"{base}/metadata/built-in/enable", headers=key)
    assert (r.status_code, r.json()) == (200, {"result": "success"})
    assert (await c.get(f"{base}/metadata", headers=key)).json()["built_in_field_enabled"]
    shown = (await c.get(base, headers=key)).json()
    assert shown["built_in_field_enabled"] is True
    assert [m["name"] for m in shown["doc_metadata"]] == [
        "kind", "priority", "published", "document_name", "uploader", "upload_date",
        "last_update_date", "source"]
    built_in = {m["name"]: m for m in (await c.get(
        f"{base}/documents/{doc1['id']}", headers=key)).json()["doc_metadata"]
        if m["id"] == "built-in"}
    assert built_in["document_name"]["value"] == "alpha"
    assert built_in["uploader"]["value"] == "Owner"
    assert built_in["source"]["value"] == "file_upload"
    _error(await c.post(f"{base}/metadata/built-in/explode", headers=key), 400,
           "invalid_param")
    await c.post(f"{base}/metadata/built-in/disable", headers=key)
    assert "document_name" not in await values(doc1["id"])

    # deleting a field removes its values from documents
    assert (await c.delete(f"{base}/metadata/{priority['id']}", headers=key)
            ).status_code == 204
    assert await values(doc2["id"]) == {"kind": ("string", "y")}
    assert [f["name"] for f in (await c.get(f"{base}/metadata", headers=key)).json()[
        "doc_metadata"]] == ["kind", "published"]
    # the name is free again, as a new field without the old values
    again = (await c.post(f"{base}/metadata", headers=key, json={
        "type": "number", "name": "priority"})).json()
    assert again["id"] != priority["id"]
    assert "priority" not in await values(doc2["id"])


# --- metadata filtering in retrieval ------------------------------------------------------------


async def test_metadata_filtering_in_retrieval(node: Node) -> None:
    key = await dataset_key(node)
    c = node.client
    dataset = await create_dataset(node, key, "Filtered")
    base = f"/v1/datasets/{dataset['id']}"
    docs = {}
    for name, facts in (("first", FACTS[:5]), ("second", FACTS[5:])):
        created = await create_text_document(node, key, dataset["id"], name,
                                  "\n\n".join(f for f, _ in facts))
        await wait_indexed(c, key, dataset["id"], created["batch"])
        docs[name] = created["document"]["id"]
    category = (await c.post(f"{base}/metadata", headers=key, json={
        "type": "string", "name": "category"})).json()
    year = (await c.post(f"{base}/metadata", headers=key, json={
        "type": "number", "name": "year"})).json()
    await c.post(f"{base}/documents/metadata", headers=key, json={"operation_data": [
        {"document_id": docs["first"], "metadata_list": [
            {"id": category["id"], "name": "category", "value": "x"},
            {"id": year["id"], "name": "year", "value": 2020}]},
        {"document_id": docs["second"], "metadata_list": [
            {"id": category["id"], "name": "category", "value": "y"},
            {"id": year["id"], "name": "year", "value": 2024}]}]})

    async def retrieve(query: str, conditions: list[dict[str, Any]] | None,
                       logical: str = "and") -> httpx.Response:
        model: dict[str, Any] = {"search_method": "semantic_search", "reranking_enable": False,
                                 "top_k": 10, "score_threshold_enabled": False}
        if conditions is not None:
            model["metadata_filtering_conditions"] = {"logical_operator": logical,
                                                      "conditions": conditions}
        return await c.post(f"{base}/retrieve", headers=key,
                            json={"query": query, "retrieval_model": model})

    async def documents_found(query: str, conditions: list[dict[str, Any]] | None,
                              logical: str = "and") -> set[str]:
        r = await retrieve(query, conditions, logical)
        assert r.status_code == 200, r.text
        return {rec["segment"]["document"]["name"] for rec in r.json()["records"]}

    question = FACTS[6][1]  # answered by the second document
    unfiltered = (await retrieve(question, None)).json()["records"]
    assert unfiltered[0]["segment"]["content"] == FACTS[6][0]
    assert await documents_found(question, None) == {"first", "second"}
    only_x = (await retrieve(question, [{"name": "category", "comparison_operator": "is",
                                         "value": "x"}])).json()["records"]
    assert only_x and {r["segment"]["document"]["name"] for r in only_x} == {"first"}
    assert FACTS[6][0] not in [r["segment"]["content"] for r in only_x]
    only_y = (await retrieve(question, [{"name": "category", "comparison_operator": "is",
                                         "value": "y"}])).json()["records"]
    assert only_y[0]["segment"]["content"] == FACTS[6][0]

    cases: list[tuple[list[dict[str, Any]], str, set[str]]] = [
        ([{"name": "category", "comparison_operator": "is not", "value": "x"}], "and",
         {"second"}),
        ([{"name": "category", "comparison_operator": "in", "value": ["x", "z"]}], "and",
         {"first"}),
        ([{"name": "category", "comparison_operator": "not empty"}], "and",
         {"first", "second"}),
        ([{"name": "category", "comparison_operator": "empty"}], "and", set()),
        ([{"name": "year", "comparison_operator": ">", "value": 2021}], "and", {"second"}),
        ([{"name": "year", "comparison_operator": "≤", "value": "2020"}], "and", {"first"}),
        ([{"name": "category", "comparison_operator": "is", "value": "x"},
          {"name": "year", "comparison_operator": "=", "value": 2024}], "and", set()),
        ([{"name": "category", "comparison_operator": "is", "value": "x"},
          {"name": "year", "comparison_operator": "=", "value": 2024}], "or",
         {"first", "second"}),
    ]
    for conditions, logical, expected in cases:
        assert await documents_found(question, conditions, logical) == expected, conditions

    # unknown names, and built-in ones while built-in fields are off: a clear 400
    r = await retrieve(question, [{"name": "colour", "comparison_operator": "is",
                                   "value": "x"}])
    _error(r, 400, "invalid_param")
    assert "colour" in r.json()["message"]
    r = await retrieve(question, [{"name": "document_name", "comparison_operator": "is",
                                   "value": "second"}])
    _error(r, 400, "invalid_param")
    assert "Built-in fields are disabled" in r.json()["message"]
    _error(await retrieve(question, [{"name": "category", "comparison_operator": "like",
                                      "value": "x"}]), 400, "invalid_param")
    _error(await retrieve(question, [{"name": "year", "comparison_operator": ">",
                                      "value": "soon"}]), 400, "invalid_param")
    await c.post(f"{base}/metadata/built-in/enable", headers=key)
    assert await documents_found(question, [{"name": "document_name",
                                             "comparison_operator": "start with",
                                             "value": "sec"}]) == {"second"}
    assert await documents_found(question, [{"name": "upload_date",
                                             "comparison_operator": "after",
                                             "value": "2000-01-01"}]) == {"first", "second"}


# --- child chunks -------------------------------------------------------------------------------

async def test_child_chunks(node: Node) -> None:
    key = await dataset_key(node)
    c = node.client
    dataset = await create_dataset(node, key, "Parents")
    text = "\n\n".join(f"{a} {b}" for (a, _), (b, _) in zip(FACTS[::2], FACTS[1::2],
                                                              strict=True))
    created = await create_text_document(node, key, dataset["id"], "nested", text,
                              doc_form="hierarchical_model", process_rule=HIERARCHICAL_RULE)
    flat = await create_text_document(node, key, dataset["id"], "flat", "A plain paragraph.")
    await wait_indexed(c, key, dataset["id"], created["batch"])
    await wait_indexed(c, key, dataset["id"], flat["batch"])
    doc_id = created["document"]["id"]
    segments_url = f"/v1/datasets/{dataset['id']}/documents/{doc_id}/segments"
    segments = (await c.get(segments_url, headers=key)).json()["data"]
    parent, neighbour = segments[0], segments[1]
    url = f"{segments_url}/{parent['id']}/child_chunks"
    collection = vector_collection(UUID(dataset["id"]), dataset["embedding_model_provider"],
                                   dataset["embedding_model"])
    vectors = node.container.vectors
    assert await vectors.count(collection, doc_id) == 10  # two children per parent

    listed = (await c.get(url, headers=key)).json()
    assert {k: listed[k] for k in ("total", "total_pages", "page", "limit")} == {
        "total": 2, "total_pages": 1, "page": 1, "limit": 20}
    first = listed["data"][0]
    assert set(first) == {"id", "segment_id", "content", "position", "word_count", "type",
                          "created_at", "updated_at"}
    assert (first["segment_id"], first["position"], first["type"]) == (parent["id"], 1,
                                                                       "automatic")
    paged = (await c.get(f"{url}?page=2&limit=1&keyword=", headers=key)).json()
    assert (paged["total_pages"], [d["position"] for d in paged["data"]]) == (2, [2])
    assert (await c.get(f"{url}?limit=500", headers=key)).json()["limit"] == 100

    def retrieval(query: str) -> Any:
        return c.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key, json={
            "query": query, "retrieval_model": {"search_method": "semantic_search",
                                                "reranking_enable": False, "top_k": 1,
                                                "score_threshold_enabled": False}})

    # add: the new child chunk is embedded and retrieval finds its parent through it
    added_text = "The submarine canteen sells pistachio ice cream on Fridays."
    r = await c.post(url, headers=key, json={"content": added_text})
    assert r.status_code == 200, r.text
    added = r.json()["data"]
    assert {k: added[k] for k in ("segment_id", "content", "position", "word_count",
                                  "type")} == {
        "segment_id": parent["id"], "content": added_text, "position": 3,
        "word_count": len(added_text), "type": "customized"}

    async def top_child(query: str) -> tuple[str, str] | None:
        records = (await retrieval(query)).json()["records"]
        if not records or not records[0]["child_chunks"]:
            return None
        return records[0]["segment"]["id"], records[0]["child_chunks"][0]["content"]

    async def found(query: str, content: str) -> bool:
        return await top_child(query) == (parent["id"], content)
    await eventually(lambda: found("Where can I buy pistachio ice cream?", added_text),
                     timeout=30)
    assert await vectors.count(collection, doc_id) == 11

    # edit: re-embedded under the same id
    edited_text = "The observatory dome opens for stargazing every Saturday night."
    r = await c.patch(f"{url}/{added['id']}", headers=key, json={"content": edited_text})
    assert r.status_code == 200, r.text
    assert {k: r.json()["data"][k] for k in ("id", "content", "position", "type")} == {
        "id": added["id"], "content": edited_text, "position": 3, "type": "customized"}
    await eventually(lambda: found("When can visitors look at the stars through a "
                                   "telescope?", edited_text), timeout=30)
    assert await vectors.count(collection, doc_id) == 11

    # delete: its vector goes too, so it no longer pulls its parent in
    assert (await c.delete(f"{url}/{added['id']}", headers=key)).status_code == 204
    assert [d["id"] for d in (await c.get(url, headers=key)).json()["data"]] == [
        first["id"], listed["data"][1]["id"]]

    async def vector_gone() -> bool:
        return await vectors.count(collection, doc_id) == 10
    await eventually(vector_gone, timeout=30)
    assert await top_child("When can visitors look at the stars through a telescope?") \
        != (parent["id"], edited_text)

    # unknown / another segment's child chunk, unknown segment: 404, nothing changes
    other_child = (await c.get(f"{segments_url}/{neighbour['id']}/child_chunks",
                               headers=key)).json()["data"][0]
    for child_id in (MISSING, "junk", other_child["id"], added["id"]):
        _error(await c.patch(f"{url}/{child_id}", headers=key, json={"content": "x"}),
               404, "not_found", "Child chunk not found.")
        _error(await c.delete(f"{url}/{child_id}", headers=key), 404, "not_found")
    _error(await c.post(f"{segments_url}/{MISSING}/child_chunks", headers=key,
                        json={"content": "x"}), 404, "not_found", "Segment not found.")
    _error(await c.get(f"{segments_url}/{neighbour['id']}/child_chunks".replace(
        doc_id, flat["document"]["id"]), headers=key), 404, "not_found")
    _error(await c.post(url, headers=key, json={"content": ""}), 400, "invalid_param")
    assert (await c.get(url, headers=key)).json()["total"] == 2
    assert (await c.get(f"{segments_url}/{neighbour['id']}/child_chunks",
                        headers=key)).json()["total"] == 2

    # a document that is not hierarchical has no child chunks to add
    flat_url = f"/v1/datasets/{dataset['id']}/documents/{flat['document']['id']}/segments"
    flat_segment = (await c.get(flat_url, headers=key)).json()["data"][0]
    _error(await c.post(f"{flat_url}/{flat_segment['id']}/child_chunks", headers=key,
                        json={"content": "x"}), 400, "invalid_param")
