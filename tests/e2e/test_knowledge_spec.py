"""Knowledge answers complete per Dify's spec (every answer here is also checked against
the spec by the harness), document downloads on local storage and S3, and the pipeline
operations that are not supported."""

# ruff: noqa: F811 - the S3-backed `node` fixture is imported, and tests take it by that name

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from uuid import UUID, uuid4

import httpx
import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from projections.knowledge import queries as kq
from tests.e2e.test_knowledge import (  # noqa: F401 - `node`: the S3-backed node fixture
    CUSTOM_RULE,
    create_dataset,
    create_text_document,
    dataset_key,
    node,
    wait_indexed,
)
from tests.files import make_pdf
from tests.harness import Node, node_settings, running_node

PARAGRAPHS = ("Refunds are paid within 30 days.\n\nThe cafeteria opens at noon.\n\n"
              "Support answers the phone on weekdays.")


@pytest.fixture
async def local_node(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
                     redis_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    """A node keeping files in a local folder (STORAGE_TYPE=opendal)."""
    settings = node_settings(postgres, fresh_database("know_local"), redis_url,
                             STORAGE_TYPE="opendal", OPENDAL_FS_ROOT=tmp_path / "storage")
    async with running_node(settings) as n:
        yield n


def _error(r: httpx.Response, status: int, code: str, message: str | None = None) -> None:
    body = r.json()
    assert (r.status_code, body["code"], body["status"]) == (status, code, status), r.text
    if message is not None:
        assert body["message"] == message


async def test_dataset_answers_have_every_spec_field(node: Node) -> None:
    key = await dataset_key(node)
    created = await node.client.post("/v1/datasets", headers=key, json={"name": "Spec"})
    dataset = created.json()
    assert {k: dataset[k] for k in (
        "pipeline_id", "runtime_mode", "chunk_structure", "icon_info", "summary_index_setting",
        "is_published", "is_multimodal", "maintainer", "partial_member_list", "doc_form",
    )} == {"pipeline_id": None, "runtime_mode": "general", "chunk_structure": None,
           "icon_info": None, "summary_index_setting": None, "is_published": False,
           "is_multimodal": False, "maintainer": "Owner", "partial_member_list": [],
           "doc_form": None}
    threshold = dataset["retrieval_model_dict"]["score_threshold"]
    assert threshold == 0.0 and isinstance(threshold, float)

    patched = await node.client.patch(f"/v1/datasets/{dataset['id']}", headers=key, json={
        "retrieval_model": {"search_method": "semantic_search", "reranking_enable": False,
                            "top_k": 5, "score_threshold_enabled": True,
                            "score_threshold": 1}})
    assert patched.json()["retrieval_model_dict"]["score_threshold"] == 1.0
    assert isinstance(patched.json()["retrieval_model_dict"]["score_threshold"], float)

    # The dataset's doc_form is its first document's (Dify's Dataset.doc_form).
    await create_text_document(node, key, dataset["id"], "first", PARAGRAPHS,
                               indexing_technique="economy")
    shown = (await node.client.get(f"/v1/datasets/{dataset['id']}", headers=key)).json()
    assert shown["doc_form"] == "text_model"

    # A page size above 100 is capped, as Dify caps it, not refused.
    for path in ("/v1/datasets", f"/v1/datasets/{dataset['id']}/documents"):
        listed = await node.client.get(f"{path}?limit=1000", headers=key)
        assert (listed.status_code, listed.json()["limit"]) == (200, 100), listed.text
    _error(await node.client.get("/v1/datasets?limit=0", headers=key), 400, "invalid_param")


async def test_document_detail_rules_files_and_metadata_views(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Details", "economy")
    base = f"/v1/datasets/{dataset['id']}"
    first = await create_text_document(node, key, dataset["id"], "first", PARAGRAPHS)
    second = await create_text_document(node, key, dataset["id"], "second", PARAGRAPHS)
    await wait_indexed(node.client, key, dataset["id"], first["batch"])
    await wait_indexed(node.client, key, dataset["id"], second["batch"])
    doc = first["document"]

    # The file is named by its id, never its storage path; the rule has an id too.
    file_id = doc["data_source_info"]["upload_file_id"]
    assert UUID(file_id) and doc["data_source_detail_dict"]["upload_file"]["id"] == file_id
    rule_id = UUID(doc["dataset_process_rule_id"])
    assert UUID(second["document"]["dataset_process_rule_id"]) != rule_id

    detail = (await node.client.get(f"{base}/documents/{doc['id']}", headers=key)).json()
    owner = doc["created_by"]
    upload = detail["data_source_info"]["upload_file"]
    assert (upload["id"], upload["name"], upload["size"], upload["extension"],
            upload["created_by"]) == (file_id, "first.txt", len(PARAGRAPHS), "txt", owner)
    assert detail["document_process_rule"] == {
        "id": str(rule_id), "dataset_id": dataset["id"], **CUSTOM_RULE}
    # the dataset's rule: the one its newest document was made with
    assert detail["dataset_process_rule"]["id"] == second["document"]["dataset_process_rule_id"]
    assert detail["doc_type"] is None
    assert detail["segment_count"] == 3
    assert detail["average_segment_length"] == detail["word_count"] // 3 > 0
    assert detail["completed_at"] >= detail["created_at"]
    assert detail["updated_at"] >= detail["created_at"]

    only = (await node.client.get(f"{base}/documents/{doc['id']}?metadata=only",
                                  headers=key)).json()
    assert only == {"id": doc["id"], "doc_type": None, "doc_metadata": []}
    without = (await node.client.get(f"{base}/documents/{doc['id']}?metadata=without",
                                     headers=key)).json()
    assert "doc_metadata" not in without and "doc_type" not in without
    assert without["document_process_rule"] == detail["document_process_rule"]
    _error(await node.client.get(f"{base}/documents/{doc['id']}?metadata=some", headers=key),
           400, "invalid_metadata", "Invalid metadata value: some")

    # Built-in metadata values are strings, as Dify's get_built_in_fields gives them.
    assert (await node.client.post(f"{base}/metadata/built-in/enable",
                                   headers=key)).status_code == 200
    shown = (await node.client.get(f"{base}/documents/{doc['id']}?metadata=only",
                                   headers=key)).json()["doc_metadata"]
    built_in = {m["name"]: m["value"] for m in shown if m["id"] == "built-in"}
    assert float(built_in["upload_date"]) == pytest.approx(detail["created_at"], abs=1)
    assert all(isinstance(v, str) for v in built_in.values())

    # A new text without a rule keeps the document's rule and its id; with one, a new id.
    same = await node.client.post(f"{base}/documents/{doc['id']}/update-by-text",
                                  headers=key, json={"text": PARAGRAPHS + "\n\nMore."})
    assert same.json()["document"]["dataset_process_rule_id"] == str(rule_id)
    assert same.json()["document"]["data_source_info"]["upload_file_id"] != file_id
    changed = await node.client.post(f"{base}/documents/{doc['id']}/update-by-text",
                                     headers=key, json={"text": PARAGRAPHS,
                                                        "process_rule": {"mode": "automatic"}})
    assert changed.json()["document"]["dataset_process_rule_id"] != str(rule_id)
    await wait_indexed(node.client, key, dataset["id"], first["batch"])

    # Segments say who made them: the split's are their document's creator's.
    segments = await node.client.get(f"{base}/documents/{doc['id']}/segments?limit=500",
                                     headers=key)
    assert segments.json()["limit"] == 100
    assert {(s["created_by"], s["updated_by"], s["summary"])
            for s in segments.json()["data"]} == {(owner, owner, None)}


async def _upload(node: Node, key: dict[str, str], dataset_id: str, name: str, data: bytes,
                  mime_type: str) -> dict[str, Any]:
    r = await node.client.post(
        f"/v1/datasets/{dataset_id}/document/create-by-file", headers=key,
        files={"file": (name, data, mime_type)},
        data={"data": '{"indexing_technique": "economy", "process_rule": {"mode": "automatic"}}'})
    assert r.status_code == 200, r.text
    return r.json()["document"]  # type: ignore[no-any-return]


def _filename(disposition: str) -> str:
    """The UTF-8 name of an RFC 5987 `filename*` parameter."""
    star = next(p.strip() for p in disposition.split(";") if p.strip().startswith("filename*="))
    charset, _, quoted = star.removeprefix("filename*=").partition("''")
    assert charset.upper() == "UTF-8"
    return unquote(quoted)


FILES = [
    ("季度报告 2026.txt", "第一季度收入增长了百分之十二。".encode(), "text/plain"),
    ("notes.md", b"# Notes\n\nThe night train leaves at 21:40.\n", "text/markdown"),
    ("handbook.pdf", make_pdf([["Passwords are rotated every 90 days."]]), "application/pdf"),
]


async def _downloads_are_the_uploads(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Files", "economy")
    base = f"/v1/datasets/{dataset['id']}"
    docs = [await _upload(node, key, dataset["id"], *f) for f in FILES]

    # One document: a signed link, then the original bytes under the original name.
    for (name, data, _), doc in zip(FILES, docs, strict=True):
        r = await node.client.get(f"{base}/documents/{doc['id']}/download", headers=key)
        assert r.status_code == 200, r.text
        url = r.json()["url"]
        assert urlsplit(url).path == f"/files/{doc['data_source_info']['upload_file_id']}" \
                                     "/file-preview"
        file = await node.client.get(url)  # no key: the signature is the permission
        assert file.status_code == 200, file.text
        assert file.content == data
        assert file.headers["content-length"] == str(len(data))
        assert file.headers["content-disposition"].startswith("attachment;")
        assert _filename(file.headers["content-disposition"]) == name

    # A link that was tampered with, or is too old, opens nothing.
    url = urlsplit((await node.client.get(f"{base}/documents/{docs[0]['id']}/download",
                                          headers=key)).json()["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    for bad in ({**query, "sign": query["sign"][::-1]},
                {**query, "timestamp": str(int(time.time()) - 3600)},
                {k: v for k, v in query.items() if k != "sign"}):
        denied = await node.client.get(f"{url.path}?{urlencode(bad)}")
        assert denied.status_code == 404 and denied.json()["code"] == "not_found"
    other_file = docs[1]["data_source_info"]["upload_file_id"]
    swapped = await node.client.get(f"/files/{other_file}/file-preview?{url.query}")
    assert swapped.status_code == 404

    # Three documents as one ZIP, in the order asked, opened and compared byte for byte.
    order = [docs[2], docs[0], docs[1]]
    r = await node.client.post(f"{base}/documents/download-zip", headers=key,
                               json={"document_ids": [d["id"] for d in order]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert _filename(r.headers["content-disposition"]).endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [FILES[2][0], FILES[0][0], FILES[1][0]]
        assert [archive.read(n) for n in archive.namelist()] == [
            FILES[2][1], FILES[0][1], FILES[1][1]]

    # Same names get Dify's suffixes; unknown documents, and bad lists, are refused.
    twin = await _upload(node, key, dataset["id"], "notes.md", b"other notes", "text/markdown")
    r = await node.client.post(f"{base}/documents/download-zip", headers=key,
                               json={"document_ids": [docs[1]["id"], twin["id"]]})
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert archive.namelist() == ["notes.md", "notes (1).md"]
        assert archive.read("notes (1).md") == b"other notes"
    _error(await node.client.post(f"{base}/documents/download-zip", headers=key,
                                  json={"document_ids": [docs[0]["id"], str(uuid4())]}),
           404, "not_found", "Document not found.")
    _error(await node.client.post(f"{base}/documents/download-zip", headers=key,
                                  json={"document_ids": []}), 400, "invalid_param")
    _error(await node.client.get(f"{base}/documents/{uuid4()}/download", headers=key),
           404, "not_found", "Document not found.")
    other = await create_dataset(node, key, "Elsewhere", "economy")
    _error(await node.client.post(f"/v1/datasets/{other['id']}/documents/download-zip",
                                  headers=key, json={"document_ids": [docs[0]["id"]]}),
           404, "not_found", "Document not found.")


async def test_downloads_from_s3(node: Node) -> None:
    await _downloads_are_the_uploads(node)


async def test_downloads_from_local_storage(local_node: Node) -> None:
    await _downloads_are_the_uploads(local_node)


async def test_download_of_a_file_missing_from_storage(local_node: Node) -> None:
    key = await dataset_key(local_node)
    dataset = await create_dataset(local_node, key, "Lost", "economy")
    doc = await _upload(local_node, key, dataset["id"], "gone.txt", b"soon gone", "text/plain")
    link = (await local_node.client.get(
        f"/v1/datasets/{dataset['id']}/documents/{doc['id']}/download", headers=key)).json()
    row = await kq.document(local_node.container.engine, UUID(dataset["id"]), UUID(doc["id"]))
    assert row is not None
    await local_node.container.storage.delete(row["source"]["key"])
    _error(await local_node.client.get(link["url"]), 404, "not_found",
           "Uploaded file not found.")
    _error(await local_node.client.get(
        f"/v1/datasets/{dataset['id']}/documents/{doc['id']}/download", headers=key),
        404, "not_found", "Uploaded file not found.")
    _error(await local_node.client.post(
        f"/v1/datasets/{dataset['id']}/documents/download-zip", headers=key,
        json={"document_ids": [doc["id"]]}), 404, "not_found", "Uploaded file not found.")


async def test_pipeline_operations_are_not_supported(local_node: Node) -> None:
    node = local_node
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Classic", "economy")
    base = f"/v1/datasets/{dataset['id']}/pipeline"
    answers = [
        await node.client.get(f"{base}/datasource-plugins", headers=key),
        await node.client.post(f"{base}/datasource/nodes/n1/run", headers=key, json={}),
        await node.client.post(f"{base}/run", headers=key, json={}),
        await node.client.post("/v1/datasets/pipeline/file-upload", headers=key,
                               files={"file": ("a.txt", b"x", "text/plain")}),
    ]
    for answer in answers:
        _error(answer, 400, "invalid_param")
        assert answer.json()["message"].startswith("Pipeline not found")
    _error(await node.client.post(f"/v1/datasets/{uuid4()}/pipeline/run", headers=key,
                                  json={}), 404, "not_found", "Dataset not found.")
    _error(await node.client.post("/v1/datasets/pipeline/file-upload"), 401, "unauthorized")
