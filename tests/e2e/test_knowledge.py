"""Knowledge end to end over HTTP: datasets, uploads (PDF and text) indexed by the indexing
processor into pgvector with the local embedding model, files on S3 (moto), retrieval
quality on a small fixed corpus, and the operations Celery never had."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID, uuid4

import boto3
import httpx
import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from tests.files import make_pdf
from tests.harness import Node, eventually, node_settings, running_node
from workers.indexing import collection_for

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
    dataset = (await node.client.post("/v1/datasets", headers=key, json={
        "name": "Temp", "indexing_technique": "high_quality"})).json()
    created = (await node.client.post(
        f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
        json={"name": "facts", "text": "\n\n".join(f for f, _ in FACTS),
              "process_rule": CUSTOM_RULE})).json()
    await wait_indexed(node.client, key, dataset["id"], created["batch"])
    c = node.container
    collection = collection_for(UUID(dataset["id"]), economy=False)
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
    dataset = (await node.client.post("/v1/datasets", headers=key, json={
        "name": "Strict", "indexing_technique": "economy"})).json()
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
    dataset = (await node.client.post("/v1/datasets", headers=key, json={
        "name": "Cheap", "indexing_technique": "economy"})).json()
    created = (await node.client.post(
        f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
        json={"name": "facts", "text": "\n\n".join(f for f, _ in FACTS),
              "process_rule": CUSTOM_RULE})).json()
    await wait_indexed(node.client, key, dataset["id"], created["batch"])
    r = await node.client.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key,
                               json={"query": "otter mascot"})
    assert "otter" in r.json()["records"][0]["segment"]["content"]


async def test_segment_edit_is_reindexed(node: Node) -> None:
    key = await dataset_key(node)
    dataset = (await node.client.post("/v1/datasets", headers=key, json={
        "name": "Editable", "indexing_technique": "high_quality"})).json()
    created = (await node.client.post(
        f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
        json={"name": "facts", "text": "\n\n".join(f for f, _ in FACTS[:3]),
              "process_rule": CUSTOM_RULE})).json()
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
