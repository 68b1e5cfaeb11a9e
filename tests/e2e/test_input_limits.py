"""Size limits over HTTP: over-long text and segments are refused (400) and an oversized
upload is refused while it streams in (413 file_too_large), in Dify's error shape, with
nothing recorded or stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from tests.e2e.test_knowledge import dataset_key
from tests.harness import Node, eventually, node_settings, running_node

MB = 1024 * 1024
TEXT_LIMIT, SEGMENT_LIMIT = 2_000, 100
BOUNDARY = "eddy-limits-boundary"


@pytest.fixture
async def node(postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
               tmp_path: Path) -> AsyncIterator[Node]:
    settings = node_settings(
        postgres, fresh_database("limits"), redis_url, EDDY_DATA_DIR=tmp_path,
        OPENDAL_FS_ROOT=tmp_path / "storage", UPLOAD_FILE_SIZE_LIMIT=1,
        DOCUMENT_TEXT_MAX_LENGTH=TEXT_LIMIT, SEGMENT_MAX_LENGTH=SEGMENT_LIMIT)
    async with running_node(settings) as n:
        yield n


def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "status"}
    assert (body["code"], body["status"]) == (code, status), body


async def _completed_document(node: Node, key: dict[str, str]) -> tuple[str, str]:
    dataset = (await node.client.post("/v1/datasets", headers=key, json={
        "name": "Limits", "indexing_technique": "economy"})).json()
    created = await node.client.post(
        f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
        json={"name": "doc", "text": "x" * TEXT_LIMIT})  # exactly at the limit: accepted
    assert created.status_code == 200, created.text
    document, batch = created.json()["document"], created.json()["batch"]

    async def completed() -> bool:
        status = (await node.client.get(
            f"/v1/datasets/{dataset['id']}/documents/{batch}/indexing-status",
            headers=key)).json()["data"]
        return status[0]["indexing_status"] == "completed"

    await eventually(completed, timeout=60)
    return dataset["id"], document["id"]


async def test_over_long_text_and_segments_are_refused_and_change_nothing(node: Node) -> None:
    key = await dataset_key(node)
    dataset_id, document_id = await _completed_document(node, key)
    docs = f"/v1/datasets/{dataset_id}/documents"
    segments = f"{docs}/{document_id}/segments"
    fits = await node.client.post(segments, headers=key, json={"segments": [
        {"content": "c" * SEGMENT_LIMIT, "answer": "a" * SEGMENT_LIMIT}]})
    assert fits.status_code == 200, fits.text
    segment_id = fits.json()["data"][0]["id"]

    async def segment_indexed() -> bool:  # its SegmentIndexed event is recorded after
        listed = (await node.client.get(segments, headers=key)).json()["data"]
        return any(s["id"] == segment_id and s["status"] == "completed" for s in listed)

    await eventually(segment_indexed, timeout=30)
    events_before = node.container.store.max_position()
    stored_before = sorted((node.container.settings.OPENDAL_FS_ROOT or Path()).rglob("*"))

    too_long: list[tuple[str, dict[str, Any]]] = [
        (f"/v1/datasets/{dataset_id}/document/create-by-text",
         {"name": "big", "text": "x" * (TEXT_LIMIT + 1)}),
        (f"{docs}/{document_id}/update-by-text", {"text": "x" * (TEXT_LIMIT + 1)}),
        (segments, {"segments": [{"content": "ok"}, {"content": "c" * (SEGMENT_LIMIT + 1)}]}),
        (segments, {"segments": [{"content": "ok", "answer": "a" * (SEGMENT_LIMIT + 1)}]}),
        (f"{segments}/{segment_id}", {"segment": {"content": "c" * (SEGMENT_LIMIT + 1)}}),
        (f"{segments}/{segment_id}", {"segment": {"answer": "a" * (SEGMENT_LIMIT + 1)}}),
    ]
    for url, body in too_long:
        response = await node.client.post(url, headers=key, json=body)
        _refused(response, 400, "invalid_param")
        assert "too long" in response.json()["message"]

    assert node.container.store.max_position() == events_before
    assert sorted((node.container.settings.OPENDAL_FS_ROOT or Path()).rglob("*")) == stored_before
    listed = (await node.client.get(docs, headers=key)).json()
    assert listed["total"] == 1


async def _multipart(size: int, sent: list[int]) -> AsyncIterator[bytes]:
    """A create-by-file body whose file has `size` bytes, counting what the server pulls."""
    yield (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
           f'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n').encode()
    chunk = b"a" * (64 * 1024)
    for _ in range(size // len(chunk)):
        sent.append(len(chunk))
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def test_oversized_upload_is_refused_while_streaming(node: Node) -> None:
    key = await dataset_key(node)
    dataset = (await node.client.post("/v1/datasets", headers=key, json={
        "name": "Uploads", "indexing_technique": "economy"})).json()
    url = f"/v1/datasets/{dataset['id']}/document/create-by-file"
    multipart = {**key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    events_before = node.container.store.max_position()

    # A declared Content-Length over the limit: refused before a byte of the body is read.
    sent: list[int] = []
    declared = await node.client.post(url, content=_multipart(50 * MB, sent),
                                      headers={**multipart, "Content-Length": str(50 * MB)})
    _refused(declared, 413, "file_too_large")
    assert sent == []

    # No Content-Length (chunked): counted as it arrives, cut off just past the limit
    # (1 MB file + 1 MB allowance for the form around it), never read to its end.
    sent = []
    chunked = await node.client.post(url, content=_multipart(50 * MB, sent), headers=multipart)
    _refused(chunked, 413, "file_too_large")
    assert 2 * MB <= sum(sent) <= 2 * MB + 128 * 1024, sum(sent)

    # Just over the limit, within the allowance: read, measured exactly, refused.
    just_over = await node.client.post(url, headers=key, files={
        "file": ("big.txt", b"a" * (MB + 1), "text/plain")})
    _refused(just_over, 413, "file_too_large")

    assert node.container.store.max_position() == events_before
    assert (await node.client.get(f"/v1/datasets/{dataset['id']}/documents",
                                  headers=key)).json()["total"] == 0
    root = node.container.settings.OPENDAL_FS_ROOT or Path()
    assert not [p for p in root.rglob("*") if p.is_file()]
