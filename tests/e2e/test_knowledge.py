"""Knowledge end to end over HTTP: datasets, uploads (PDF and text) indexed by the indexing
processor into pgvector with the local embedding model, files on S3 (moto), retrieval
quality on a small fixed corpus, and the operations Celery never had."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID, uuid4

import boto3
import httpx
import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from projections.knowledge import queries as kq
from schemas.knowledge.naming import vector_collection
from tests.files import make_pdf
from tests.harness import Node, eventually, node_settings, running_node

# A fixed corpus: one fact per paragraph, and questions that paraphrase each fact.
FACTS = [
    ("The lighthouse on Karsk Island was automated in 1987 and no keeper has lived there "
     "since then.", "When did the island beacon stop needing a resident caretaker?"),
    ("Our refund policy allows customers to return unopened items within 30 days for a full "
     "reimbursement.", "How long do buyers have to send back products and get their money?"),
    ("The office cafeteria serves vegetarian lasagna every Wednesday at noon.",
     "Which day is the meat-free pasta dish available for lunch at work?"),
    ("Passwords must be rotated every 90 days and may not reuse any of the last five.",
     "How often do employees have to change their login secret?"),
    ("The Tallinn data center runs entirely on wind power purchased from a local "
     "cooperative.", "What energy source powers the Estonian server facility?"),
    ("Annual leave requests must be submitted to a manager at least two weeks in advance.",
     "How early should staff ask their boss for vacation days?"),
    ("The company mascot is a blue otter named Pebble who appears on all product boxes.",
     "What animal is printed on the packaging as the brand character?"),
    ("Expense reports above 500 euros require approval from the finance director.",
     "Who has to sign off on large reimbursement claims?"),
    ("The night train from Vienna to Venice departs at 21:40 and arrives at 09:10.",
     "When does the overnight rail service to Italy leave?"),
    ("Customer support is available by phone from 8am to 6pm on weekdays only.",
     "What are the hours for calling the help line?"),
]


@pytest.fixture
async def node(postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
               s3_endpoint: str) -> AsyncIterator[Node]:
    settings = node_settings(
        postgres, fresh_database("know"), redis_url,
        STORAGE_TYPE="s3", S3_ENDPOINT=s3_endpoint, S3_BUCKET_NAME=f"eddy-{uuid4().hex[:8]}",
        S3_ACCESS_KEY="testing", S3_SECRET_KEY="testing", S3_REGION="us-east-1",
        UPLOAD_FILE_SIZE_LIMIT=1)
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1",
                 ).create_bucket(Bucket=settings.S3_BUCKET_NAME)
    async with running_node(settings) as n:
        yield n


async def dataset_key(node: Node) -> dict[str, str]:
    auth = await node.setup_and_login()
    token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
    return {"Authorization": f"Bearer {token['token']}"}


async def wait_indexed(client: httpx.AsyncClient, headers: dict[str, str], dataset_id: str,
                       batch: str, expect: str = "completed") -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        r = await client.get(f"/v1/datasets/{dataset_id}/documents/{batch}/indexing-status",
                             headers=headers)
        data = r.json()["data"]
        return data if all(d["indexing_status"] == expect for d in data) else None

    return await eventually(done, timeout=120, interval=0.3)


CUSTOM_RULE = {"mode": "custom", "rules": {
    "pre_processing_rules": [{"id": "remove_extra_spaces", "enabled": True},
                             {"id": "remove_urls_emails", "enabled": False}],
    "segmentation": {"separator": "\\n\\n", "max_tokens": 120, "chunk_overlap": 0}}}


async def create_dataset(node: Node, key: dict[str, str], name: str,
                         technique: str = "high_quality") -> dict[str, Any]:
    r = await node.client.post("/v1/datasets", headers=key, json={
        "name": name, "indexing_technique": technique})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def create_text_document(node: Node, key: dict[str, str], dataset_id: str, name: str,
                               text: str, **settings: Any) -> dict[str, Any]:
    """create-by-text with the custom paragraph rule (one segment per paragraph)."""
    r = await node.client.post(f"/v1/datasets/{dataset_id}/document/create-by-text",
                               headers=key, json={"name": name, "text": text,
                                                  "process_rule": CUSTOM_RULE, **settings})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_upload_index_and_retrieve(node: Node) -> None:
    key = await dataset_key(node)
    created = await node.client.post("/v1/datasets", headers=key, json={
        "name": "Handbook", "indexing_technique": "high_quality"})
    assert created.status_code == 200, created.text
    dataset = created.json()
    assert dataset["indexing_technique"] == "high_quality" and dataset["document_count"] == 0

    # half the facts in a PDF (one per page), half as text
    pdf = make_pdf([[fact] for fact, _ in FACTS[:5]])
    by_file = await node.client.post(
        f"/v1/datasets/{dataset['id']}/document/create-by-file", headers=key,
        files={"file": ("handbook.pdf", pdf, "application/pdf")},
        data={"data": json.dumps({"process_rule": CUSTOM_RULE})})
    assert by_file.status_code == 200, by_file.text
    # the answer shows the document as projected right then: queued or already under way
    assert by_file.json()["document"]["display_status"] in ("queuing", "indexing", "available")
    assert by_file.json()["document"]["name"] == "handbook.pdf"
    by_text = await node.client.post(
        f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key, json={
            "name": "policies", "text": "\n\n".join(f for f, _ in FACTS[5:]),
            "process_rule": CUSTOM_RULE})
    assert by_text.status_code == 200, by_text.text

    for created_doc in (by_file.json(), by_text.json()):
        [status] = await wait_indexed(node.client, key, dataset["id"], created_doc["batch"])
        for stamp in ("processing_started_at", "parsing_completed_at", "cleaning_completed_at",
                      "splitting_completed_at", "completed_at"):
            assert status[stamp] is not None, stamp
        assert status["completed_segments"] == status["total_segments"] == 5

    docs = (await node.client.get(f"/v1/datasets/{dataset['id']}/documents",
                                  headers=key)).json()
    assert docs["total"] == 2
    assert {d["display_status"] for d in docs["data"]} == {"available"}
    segments = (await node.client.get(
        f"/v1/datasets/{dataset['id']}/documents/{by_text.json()['document']['id']}/segments",
        headers=key)).json()
    assert [s["content"] for s in segments["data"]] == [f for f, _ in FACTS[5:]]
    assert all(s["status"] == "completed" for s in segments["data"])

    # paraphrased questions: the fact answering each should rank in the top 3
    hits = 0
    for fact, question in FACTS:
        r = await node.client.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key, json={
            "query": question, "retrieval_model": {
                "search_method": "semantic_search", "reranking_enable": False, "top_k": 3,
                "score_threshold_enabled": False}})
        assert r.status_code == 200, r.text
        records = r.json()["records"]
        assert records and records[0]["segment"]["document"]["name"] in ("handbook.pdf",
                                                                         "policies")
        hits += any(rec["segment"]["content"] == fact for rec in records)
    hit_rate = hits / len(FACTS)
    print(f"semantic hit rate@3 on {len(FACTS)} paraphrased questions: {hit_rate:.2f}")
    assert hit_rate >= 0.8

    # keyword and hybrid search find an exact term
    for method in ("full_text_search", "hybrid_search"):
        r = await node.client.post(f"/v1/datasets/{dataset['id']}/hit-testing", headers=key,
                                   json={"query": "lasagna", "retrieval_model": {
                                       "search_method": method, "reranking_enable": False,
                                       "top_k": 2, "score_threshold_enabled": False}})
        assert "lasagna" in r.json()["records"][0]["segment"]["content"], method


async def test_delete_document_removes_segments_vectors_and_files(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Temp", "high_quality")
    created = await create_text_document(node, key, dataset["id"], "facts",
                                         "\n\n".join(f for f, _ in FACTS))
    await wait_indexed(node.client, key, dataset["id"], created["batch"])
    c = node.container
    collection = vector_collection(UUID(dataset["id"]), dataset["embedding_model_provider"],
                                   dataset["embedding_model"])
    doc_id = created["document"]["id"]
    assert await c.vectors.count(collection, doc_id) == len(FACTS)
    source_key = f"datasets/{dataset['id']}/{doc_id}/"

    deleted = await node.client.delete(f"/v1/datasets/{dataset['id']}/documents/{doc_id}",
                                       headers=key)
    assert deleted.status_code == 204
    gone = await node.client.get(f"/v1/datasets/{dataset['id']}/documents/{doc_id}",
                                 headers=key)
    assert gone.status_code == 404

    async def cleaned() -> bool:
        return await c.vectors.count(collection, doc_id) == 0 and not await c.storage.exists(
            f"{source_key}source/facts.txt")
    await eventually(cleaned)


async def test_bad_uploads_get_clear_errors_and_change_nothing(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Strict", "economy")
    url = f"/v1/datasets/{dataset['id']}/document"
    cases = [
        (f"{url}/create-by-file", {"files": {"file": ("virus.exe", b"MZ...", "x/y")}}, 415,
         "unsupported_file_type"),
        (f"{url}/create-by-file", {"files": {"file": ("big.txt", b"a" * (1024 * 1024 + 1),
                                                      "text/plain")}}, 413, "file_too_large"),
        (f"{url}/create-by-file", {"data": {"data": "{}"}}, 400, "no_file_uploaded"),
        (f"{url}/create-by-file", {"files": {"file": ("a.txt", b"hello", "text/plain")},
                                   "data": {"data": "{not json"}}, 400, "invalid_param"),
        (f"{url}/create-by-text", {"json": {"name": "x", "text": "hi", "process_rule": {
            "mode": "custom", "rules": {"pre_processing_rules": [], "segmentation": {
                "separator": "\\n", "max_tokens": 5000}}}}}, 400, "invalid_param"),
        (f"{url}/create-by-text", {"json": {"name": "x"}}, 400, "invalid_param"),
        (f"{url}/create-by-text", {"json": {"name": "x", "text": "hi",
                                            "doc_form": "qa_model"}}, 400, "invalid_param"),
        ("/v1/datasets/00000000-0000-0000-0000-000000000000/document/create-by-text",
         {"json": {"name": "x", "text": "hi"}}, 404, "not_found"),
    ]
    for target, kwargs, status, code in cases:
        r = await node.client.post(target, headers=key, **kwargs)
        assert (r.status_code, r.json()["code"]) == (status, code), (target, r.text)
    docs = (await node.client.get(f"/v1/datasets/{dataset['id']}/documents", headers=key))
    assert docs.json()["total"] == 0
    # another workspace's key would not even see the dataset; a missing key gets 401
    assert (await node.client.get(f"/v1/datasets/{dataset['id']}")).status_code == 401


async def test_economy_dataset_uses_keyword_search(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Cheap", "economy")
    created = await create_text_document(node, key, dataset["id"], "facts",
                                         "\n\n".join(f for f, _ in FACTS))
    await wait_indexed(node.client, key, dataset["id"], created["batch"])
    r = await node.client.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key,
                               json={"query": "otter mascot"})
    assert "otter" in r.json()["records"][0]["segment"]["content"]


async def test_segment_edit_is_reindexed(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Editable", "high_quality")
    created = await create_text_document(node, key, dataset["id"], "facts",
                                         "\n\n".join(f for f, _ in FACTS[:3]))
    await wait_indexed(node.client, key, dataset["id"], created["batch"])
    base = f"/v1/datasets/{dataset['id']}/documents/{created['document']['id']}/segments"
    first = (await node.client.get(base, headers=key)).json()["data"][0]
    new_text = "Penguins in the zoo are fed sardines twice a day by the aquarium staff."
    updated = await node.client.post(f"{base}/{first['id']}", headers=key,
                                     json={"segment": {"content": new_text}})
    assert updated.status_code == 200 and updated.json()["data"]["content"] == new_text

    async def found() -> bool:
        r = await node.client.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key,
                                   json={"query": "What do the birds at the zoo eat?",
                                         "retrieval_model": {"search_method": "semantic_search",
                                                             "reranking_enable": False,
                                                             "top_k": 1,
                                                             "score_threshold_enabled": False}})
        records = r.json()["records"]
        return bool(records) and records[0]["segment"]["content"] == new_text
    await eventually(found)

    added = await node.client.post(base, headers=key, json={"segments": [
        {"content": "The parking garage closes at midnight.", "keywords": ["parking"]}]})
    assert added.status_code == 200 and added.json()["data"][0]["position"] == 4
    removed = await node.client.delete(f"{base}/{first['id']}", headers=key)
    assert removed.status_code == 204
    listed = (await node.client.get(base, headers=key)).json()
    assert listed["total"] == 3 and first["id"] not in [s["id"] for s in listed["data"]]


async def test_pause_resume_and_retry(postgres: EmbeddedPostgres,
                                      fresh_database: Callable[..., str], redis_url: str,
                                      tmp_path: Any) -> None:
    from bootstrap import Container
    from workers.node import start_roles

    settings = node_settings(postgres, fresh_database("pause"), redis_url,
                             OPENDAL_FS_ROOT=str(tmp_path / "files"))
    # No indexer yet: documents wait in the queue, where they can be paused.
    async with running_node(settings, roles=["relay", "commands", "projections"]) as node:
        auth = await node.setup_and_login()
        token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
        key = {"Authorization": f"Bearer {token['token']}"}
        dataset = await create_dataset(node, key, "Ops", "high_quality")
        ok = await create_text_document(node, key, dataset["id"], "ok",
                                        "\n\n".join(f for f, _ in FACTS[:2]))
        broken = (await node.client.post(
            f"/v1/datasets/{dataset['id']}/document/create-by-file", headers=key,
            files={"file": ("broken.pdf", b"%PDF-1.4 this is not a pdf", "application/pdf")},
        )).json()
        base = f"/console/api/datasets/{dataset['id']}/documents/{ok['document']['id']}"
        paused = await node.client.patch(f"{base}/processing/pause", headers=auth)
        assert paused.status_code == 200, paused.text
        doc_url = f"/v1/datasets/{dataset['id']}/documents/{ok['document']['id']}"
        assert (await node.client.get(doc_url, headers=key)).json()["indexing_status"] \
            == "waiting"
        status = (await node.client.get(
            f"/v1/datasets/{dataset['id']}/documents/{ok['batch']}/indexing-status",
            headers=key)).json()["data"][0]
        assert status["paused_at"] is not None

        container: Container = node.container
        stop = asyncio.Event()
        tasks = start_roles(container, ["knowledge.indexing-priority",
                                        "knowledge.indexing-bulk"], stop, member="late-indexer")
        try:
            # the broken file fails with a clear error; the paused document does not move
            [failed] = await wait_indexed(node.client, key, dataset["id"], broken["batch"],
                                          expect="error")
            assert failed["error"] and failed["stopped_at"] is not None
            await asyncio.sleep(1.0)
            assert (await node.client.get(doc_url, headers=key)).json()[
                "indexing_status"] == "waiting"

            resumed = await node.client.patch(f"{base}/processing/resume", headers=auth)
            assert resumed.status_code == 200
            await wait_indexed(node.client, key, dataset["id"], ok["batch"])
            again = await node.client.patch(f"{base}/processing/pause", headers=auth)
            assert again.status_code == 400  # nothing left to pause

            # retry all failed documents: a new attempt runs (and fails the same way)
            retry = await node.client.post(
                f"/console/api/datasets/{dataset['id']}/retry-failed", headers=auth)
            assert retry.status_code == 204
            doc = f"/v1/datasets/{dataset['id']}/documents/{broken['document']['id']}"

            async def retried() -> bool:
                row = (await node.client.get(doc, headers=key)).json()
                return row["indexing_status"] == "error" and row["error"] is not None and \
                    await _attempt(container, broken["document"]["id"]) == 2
            await eventually(retried)

            # replacing the broken file with good text re-indexes it to completion
            fixed = await node.client.post(f"{doc}/update-by-text", headers=key,
                                           json={"text": FACTS[3][0]})
            assert fixed.status_code == 200, fixed.text
            await wait_indexed(node.client, key, dataset["id"], broken["batch"])
            segs = (await node.client.get(f"{doc}/segments", headers=key)).json()
            assert [s["content"] for s in segs["data"]] == [FACTS[3][0]]
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=10)


async def _attempt(container: Any, document_id: str) -> int:
    from sqlalchemy import text

    async with container.engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT attempt FROM console_v1.documents WHERE id = :i"), {"i": document_id}
        )).scalar() or 0)


async def test_document_status_actions_and_hierarchical_chunks(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Parents", "high_quality")
    created = await node.client.post(
        f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key, json={
            "name": "nested", "doc_form": "hierarchical_model",
            "text": "\n\n".join(f"{a} {b}" for (a, _), (b, _) in zip(FACTS[::2], FACTS[1::2],
                                                                      strict=True)),
            "process_rule": {"mode": "hierarchical", "rules": {
                "pre_processing_rules": [{"id": "remove_extra_spaces", "enabled": True}],
                "segmentation": {"separator": "\\n\\n", "max_tokens": 500},
                "parent_mode": "paragraph",
                "subchunk_segmentation": {"separator": ". ", "max_tokens": 60}}}})
    assert created.status_code == 200, created.text
    body = created.json()
    await wait_indexed(node.client, key, dataset["id"], body["batch"])
    doc_id = body["document"]["id"]
    segs = (await node.client.get(
        f"/v1/datasets/{dataset['id']}/documents/{doc_id}/segments", headers=key)).json()
    assert segs["doc_form"] == "hierarchical_model" and segs["total"] == 5
    assert all(len(s["child_chunks"]) == 2 for s in segs["data"])

    # retrieval matches a child chunk and returns its parent with the matched child
    r = (await node.client.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key, json={
        "query": FACTS[4][1]})).json()
    top = r["records"][0]
    assert FACTS[4][0] in top["segment"]["content"]
    assert top["child_chunks"] and top["child_chunks"][0]["content"] in FACTS[4][0]

    url = f"/v1/datasets/{dataset['id']}/documents"
    disabled = await node.client.patch(f"{url}/status/disable", headers=key,
                                       json={"document_ids": [doc_id]})
    assert disabled.json() == {"result": "success"}
    doc = (await node.client.get(f"{url}/{doc_id}", headers=key)).json()
    assert (doc["enabled"], doc["display_status"]) == (False, "disabled")
    assert doc["disabled_at"] is not None
    # a disabled document is not retrieved
    r = (await node.client.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key,
                                json={"query": FACTS[4][1]})).json()
    assert r["records"] == []
    await node.client.patch(f"{url}/status/enable", headers=key, json={"document_ids": [doc_id]})
    await node.client.patch(f"{url}/status/archive", headers=key, json={"document_ids": [doc_id]})
    listed = (await node.client.get(f"{url}?status=archived", headers=key)).json()
    assert [d["id"] for d in listed["data"]] == [doc_id]
    bad = await node.client.patch(f"{url}/status/explode", headers=key,
                                  json={"document_ids": [doc_id]})
    assert bad.status_code == 400


async def test_dataset_crud(node: Node) -> None:
    key = await dataset_key(node)
    a = await node.client.post("/v1/datasets", headers=key, json={"name": "A"})
    assert a.status_code == 200 and a.json()["indexing_technique"] is None
    dup = await node.client.post("/v1/datasets", headers=key, json={"name": "A"})
    assert (dup.status_code, dup.json()["code"]) == (409, "dataset_name_duplicate")
    patched = await node.client.patch(f"/v1/datasets/{a.json()['id']}", headers=key, json={
        "name": "A2", "retrieval_model": {"search_method": "hybrid_search",
                                          "reranking_enable": False, "top_k": 7,
                                          "score_threshold_enabled": False}})
    assert patched.status_code == 200
    assert patched.json()["name"] == "A2"
    assert patched.json()["retrieval_model_dict"]["search_method"] == "hybrid_search"
    no_technique = await node.client.post(
        f"/v1/datasets/{a.json()['id']}/document/create-by-text", headers=key,
        json={"name": "x", "text": "hello"})
    assert no_technique.status_code == 400
    listed = (await node.client.get("/v1/datasets?page=1&limit=10", headers=key)).json()
    assert (listed["total"], listed["data"][0]["name"]) == (1, "A2")
    assert (await node.client.delete(f"/v1/datasets/{a.json()['id']}",
                                     headers=key)).status_code == 204
    assert (await node.client.get(f"/v1/datasets/{a.json()['id']}",
                                  headers=key)).status_code == 404


async def test_concurrent_creates_of_one_dataset_name_make_one_dataset(node: Node) -> None:
    key = await dataset_key(node)
    answers = await asyncio.gather(*(
        node.client.post("/v1/datasets", headers=key, json={"name": "Same"}) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {
        "dataset_name_duplicate"}
    listed = (await node.client.get("/v1/datasets?page=1&limit=10", headers=key)).json()
    assert [d["name"] for d in listed["data"]] == ["Same"]
    # Renaming frees the old name; deleting frees the new one.
    first = next(a.json()["id"] for a in answers if a.status_code == 200)
    assert (await node.client.patch(f"/v1/datasets/{first}", headers=key,
                                    json={"name": "Renamed"})).status_code == 200
    again = await node.client.post("/v1/datasets", headers=key, json={"name": "Same"})
    assert again.status_code == 200
    taken = await node.client.patch(f"/v1/datasets/{again.json()['id']}", headers=key,
                                    json={"name": "Renamed"})
    assert (taken.status_code, taken.json()["code"]) == (409, "dataset_name_duplicate")
    assert (await node.client.delete(f"/v1/datasets/{first}", headers=key)).status_code == 204
    assert (await node.client.post("/v1/datasets", headers=key,
                                   json={"name": "Renamed"})).status_code == 200


async def test_update_by_file_and_dataset_delete_cleanup(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Swap", "high_quality")
    created = (await node.client.post(
        f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
        json={"name": "v1", "text": FACTS[0][0], "process_rule": CUSTOM_RULE})).json()
    await wait_indexed(node.client, key, dataset["id"], created["batch"])
    doc = f"/v1/datasets/{dataset['id']}/documents/{created['document']['id']}"
    replaced = await node.client.patch(doc, headers=key, files={
        "file": ("v2.md", "\n\n".join(f for f, _ in FACTS[1:3]).encode(), "text/markdown")},
        data={"data": json.dumps({"process_rule": CUSTOM_RULE})})
    assert replaced.status_code == 200, replaced.text
    await wait_indexed(node.client, key, dataset["id"], created["batch"])
    segs = (await node.client.get(f"{doc}/segments", headers=key)).json()
    assert [s["content"] for s in segs["data"]] == [f for f, _ in FACTS[1:3]]
    collection = vector_collection(UUID(dataset["id"]), dataset["embedding_model_provider"],
                                   dataset["embedding_model"])
    assert await node.container.vectors.count(collection) == 2  # v1's vector is gone
    row = await kq.document(node.container.engine, UUID(dataset["id"]),
                            UUID(created["document"]["id"]))
    assert row is not None and await node.container.storage.exists(row["source"]["key"])

    assert (await node.client.delete(f"/v1/datasets/{dataset['id']}",
                                     headers=key)).status_code == 204

    async def all_gone() -> bool:
        return await node.container.vectors.count(collection) == 0 and not \
            await node.container.storage.exists(row["source"]["key"])
    await eventually(all_gone)
