"""Input at the edges, over real HTTP: what Dify accepts is accepted (unknown query
parameters ignored, empty optional ones absent), and what cannot be stored or served is
refused with a 4xx before anything is stored, instead of a 500 now or on every later use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import pytest

from schemas.knowledge.naming import document_prefix
from tests.chat import MODEL, PROVIDERS, Chat, app_with_key
from tests.harness import served


@pytest.fixture
async def http(chat: Chat) -> AsyncIterator[httpx.AsyncClient]:
    async with served(chat.node.app) as url, httpx.AsyncClient(base_url=url, timeout=60) as c:
        yield c


async def dataset_key(http: httpx.AsyncClient, chat: Chat) -> dict[str, str]:
    token = (await http.post("/console/api/datasets/api-keys", headers=chat.auth)).json()
    return {"Authorization": f"Bearer {token['token']}"}


async def a_dataset(http: httpx.AsyncClient, key: dict[str, str]) -> str:
    created = await http.post("/v1/datasets", headers=key, json={
        "name": "Edges", "indexing_technique": "economy"})
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def assert_refused(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] and body["message"]
    return body


# --- item 15: liberal in what is accepted ------------------------------------------------------


async def test_conversation_list_ignores_pinned_and_empty_optional_parameters(
        chat: Chat, http: httpx.AsyncClient) -> None:
    await chat.configure()
    sent = await http.post("/v1/chat-messages", headers=chat.key, json={
        "inputs": {}, "query": "Hi", "user": "u", "response_mode": "blocking"})
    assert sent.status_code == 200, sent.text
    conversation = sent.json()["conversation_id"]
    # As Dify's SDKs send it when nothing is pinned or paged
    for query in ("user=u&last_id=&limit=10&pinned=", "user=u&pinned=true",
                  "user=u&pinned=false&sort_by=&limit=&unknown=1"):
        listed = await http.get(f"/v1/conversations?{query}", headers=chat.key)
        assert listed.status_code == 200, (query, listed.text)
        assert [c["id"] for c in listed.json()["data"]] == [conversation], query
    for query in ("", "?user=", "?limit=5"):  # no user: Dify's default end user's, not u's
        anonymous = await http.get(f"/v1/conversations{query}", headers=chat.key)
        assert anonymous.status_code == 200, (query, anonymous.text)
        assert anonymous.json()["data"] == [], query
    messages = await http.get(
        f"/v1/messages?user=u&conversation_id={conversation}&first_id=&limit=", headers=chat.key)
    assert messages.status_code == 200, messages.text
    assert [m["query"] for m in messages.json()["data"]] == ["Hi"]
    key = await dataset_key(http, chat)
    dataset = await a_dataset(http, key)
    listed = await http.get("/v1/datasets?page=&limit=&keyword=&tag_ids=&include_all=",
                            headers=key)
    assert listed.status_code == 200, listed.text
    assert [d["id"] for d in listed.json()["data"]] == [dataset]


# --- item 10: validate what is stored ----------------------------------------------------------


async def test_malformed_retrieval_weights_are_refused_and_retrieval_keeps_working(
        chat: Chat, http: httpx.AsyncClient) -> None:
    key = await dataset_key(http, chat)
    dataset = await a_dataset(http, key)
    for weights in ({"vector_setting": {"vector_weight": "heavy"}},
                    {"keyword_setting": "half"}, {"vector_setting": {"vector_weight": 7}}):
        refused = await http.patch(f"/v1/datasets/{dataset}", headers=key, json={
            "retrieval_model": {"search_method": "hybrid_search", "weights": weights}})
        assert_refused(refused)
    malformed_filter = await http.patch(f"/v1/datasets/{dataset}", headers=key, json={
        "retrieval_model": {"metadata_filtering_conditions": {"conditions": "all"}}})
    assert_refused(malformed_filter)
    retrieved = await http.post(f"/v1/datasets/{dataset}/retrieve", headers=key,
                                json={"query": "anything"})
    assert retrieved.status_code == 200, retrieved.text
    good = await http.patch(f"/v1/datasets/{dataset}", headers=key, json={
        "retrieval_model": {"search_method": "hybrid_search", "weights": {
            "weight_type": "customized", "vector_setting": {"vector_weight": 0.7},
            "keyword_setting": {"keyword_weight": 0.3}}}})
    assert good.status_code == 200, good.text
    weights = good.json()["retrieval_model_dict"]["weights"]
    assert (weights["vector_setting"]["vector_weight"],
            weights["keyword_setting"]["keyword_weight"]) == (0.7, 0.3)


async def test_integers_beyond_64_bits_are_refused(chat: Chat, http: httpx.AsyncClient) -> None:
    await chat.configure()
    refused = await http.post("/v1/chat-messages", headers={
        **chat.key, "Content-Type": "application/json"}, content=(
        b'{"inputs": {"n": 123456789012345678901234567890}, "query": "Hi", "user": "u",'
        b' "response_mode": "blocking"}'))
    assert "64 bits" in assert_refused(refused)["message"]
    listed = await http.get("/v1/conversations?user=u", headers=chat.key)
    assert listed.json()["data"] == []


async def test_a_page_beyond_any_offset_is_refused(chat: Chat, http: httpx.AsyncClient) -> None:
    for path in ("/v1/apps/annotations", "/v1/app/feedbacks"):
        assert_refused(await http.get(f"{path}?page={10**20}", headers=chat.key))
    assert_refused(await http.get(f"/console/api/apps?page={10**20}", headers=chat.auth))


async def test_preview_as_attachment_of_a_non_latin1_file_name(
        chat: Chat, http: httpx.AsyncClient) -> None:
    name = "季度报告 — ☃.txt"
    uploaded = await http.post("/v1/files/upload", headers=chat.key, data={"user": "u"},
                               files={"file": (name, b"hello", "text/plain")})
    assert uploaded.status_code == 201, uploaded.text
    preview = await http.get(f"/v1/files/{uploaded.json()['id']}/preview?as_attachment=true",
                             headers=chat.key)
    assert preview.status_code == 200, preview.text
    assert preview.content == b"hello"
    disposition = preview.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition


async def test_a_malformed_endpoint_url_is_refused(chat: Chat, http: httpx.AsyncClient) -> None:
    for endpoint in ("http://[x", "ftp://example.com/v1", "http://exa\x01mple.com"):
        refused = await http.post(f"{PROVIDERS}/openai_api_compatible/models",
                                  headers=chat.auth, json={
                                      "model": "other", "model_type": "llm", "credentials": {
                                          "api_key": "k", "endpoint_url": endpoint,
                                          "mode": "chat"}})
        assert_refused(refused)


async def test_a_remote_url_with_a_control_character_is_refused(
        chat: Chat, http: httpx.AsyncClient) -> None:
    await chat.configure(file_upload={"image": {"enabled": True}})
    refused = await http.post("/v1/chat-messages", headers=chat.key, json={
        "inputs": {}, "query": "What is this?", "user": "u", "response_mode": "blocking",
        "files": [{"type": "image", "transfer_method": "remote_url",
                   "url": "http://93.184.216.34/a\x01b.png"}]})
    assert_refused(refused)
    assert (await http.get("/v1/conversations?user=u", headers=chat.key)).json()["data"] == []


async def test_update_by_file_with_a_non_string_name_is_refused_and_stores_nothing(
        chat: Chat, http: httpx.AsyncClient) -> None:
    key = await dataset_key(http, chat)
    dataset = await a_dataset(http, key)
    created = await http.post(f"/v1/datasets/{dataset}/document/create-by-text", headers=key,
                              json={"name": "notes", "text": "One note.",
                                    "process_rule": {"mode": "automatic"}})
    assert created.status_code == 200, created.text
    document = created.json()["document"]["id"]
    settings = chat.node.container.settings
    # the document's sources (its indexing writes artifacts beside them meanwhile)
    root = (settings.OPENDAL_FS_ROOT or settings.EDDY_DATA_DIR / "storage") / document_prefix(
        UUID(dataset), UUID(document)) / "source"
    stored_before = sorted(p for p in root.rglob("*") if p.is_file())
    assert stored_before  # the first source
    for data in ('{"name": 5}', '{"name": ["a"]}', '{"process_rule": "fast"}'):
        refused = await http.post(
            f"/v1/datasets/{dataset}/documents/{document}/update-by-file", headers=key,
            data={"data": data}, files={"file": ("new.txt", b"Replaced.", "text/plain")})
        assert_refused(refused)
    assert sorted(p for p in root.rglob("*") if p.is_file()) == stored_before
    kept = await http.get(f"/v1/datasets/{dataset}/documents/{document}", headers=key)
    assert kept.json()["name"] == "notes"


async def test_an_idempotency_key_reused_on_another_app_is_refused(
        chat: Chat, http: httpx.AsyncClient) -> None:
    first, _ = await app_with_key(chat.node, chat.auth, name="First")
    second, _ = await app_with_key(chat.node, chat.auth, name="Second")
    retry = {**chat.auth, "Idempotency-Key": "rename-once"}
    for _ in range(2):  # the same request retried: the same answer
        renamed = await http.put(f"/console/api/apps/{first}", headers=retry,
                                 json={"name": "Renamed"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed", renamed.text
    assert_refused(await http.put(f"/console/api/apps/{second}", headers=retry,
                                  json={"name": "Renamed"}), 422)
    kept = await http.get(f"/console/api/apps/{second}", headers=chat.auth)
    assert kept.json()["name"] == "Second"
    deleted = await http.delete(f"/console/api/apps/{first}", headers={
        **chat.auth, "Idempotency-Key": "delete-once"})
    assert deleted.status_code == 204, deleted.text
    assert_refused(await http.delete(f"/console/api/apps/{second}", headers={
        **chat.auth, "Idempotency-Key": "delete-once"}), 422)
    assert (await http.get(f"/console/api/apps/{second}", headers=chat.auth)).status_code == 200
    keyed = {**chat.auth, "Idempotency-Key": "one-key"}
    for _ in range(2):
        created = await http.post(f"/console/api/apps/{second}/api-keys", headers=keyed)
        assert created.status_code == 201, created.text
    third, _ = await app_with_key(chat.node, chat.auth, name="Third")
    assert_refused(await http.post(f"/console/api/apps/{third}/api-keys", headers=keyed), 422)
    listed = await http.get(f"/console/api/apps/{second}/api-keys", headers=chat.auth)
    assert len(listed.json()["data"]) == 2  # app_with_key's and the one made once


async def test_completion_params_that_would_break_every_answer_are_refused(
        chat: Chat, http: httpx.AsyncClient) -> None:
    await chat.configure()
    for params in ({"max_tokens": "lots"}, {"temperature": 9}, {"model": "another"},
                   {"stream": False}, {"stop": ["a", "b", "c", "d", "e"]}):
        refused = await http.post(f"/console/api/apps/{chat.app_id}/model-config",
                                  headers=chat.auth, json={"model": {
                                      "provider": "openai_api_compatible", "name": MODEL,
                                      "mode": "chat", "completion_params": params}})
        assert_refused(refused)
    answered = await http.post("/v1/chat-messages", headers=chat.key, json={
        "inputs": {}, "query": "Still there?", "user": "u", "response_mode": "blocking"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["answer"] == "Echo: Still there?"
