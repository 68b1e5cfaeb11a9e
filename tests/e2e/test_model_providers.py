"""Model providers of a workspace over HTTP, against a fake provider speaking the OpenAI
protocol: credentials validated when saved, sealed at rest, shown masked, never in plaintext
in an event, a topic, a read model or a log line; defaults; the model lookup."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from projections.platform import queries
from projections.platform.models import resolve_model
from schemas.errors import ProviderNotInitialized
from schemas.platform.naming import account_id_for
from tests.e2e.test_knowledge import create_text_document, wait_indexed
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import (
    Node,
    add_account_with_workspace,
    everything_recorded,
    record_publishes,
)

KEY = "sk-fake-provider-key-0123456789"
BASE = "/console/api/workspaces/current"
COMPATIBLE = "langgenius/openai_api_compatible/openai_api_compatible"
OPENAI = "langgenius/openai/openai"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY, models={"qwen2.5", "qwen2.5-base", "bge-m3",
                                               "rerank-1"}) as fake:
        yield fake


def compatible(provider: FakeOpenAIServer, model: str, model_type: str,
               **credentials: Any) -> dict[str, Any]:
    return {"model": model, "model_type": model_type, "credentials": {
        "api_key": KEY, "endpoint_url": provider.base_url, "mode": "chat",
        "context_size": "32768", "max_tokens_to_sample": "2048", **credentials}}


async def test_custom_models_are_validated_listed_masked_and_resolved(
        node: Node, provider: FakeOpenAIServer) -> None:
    auth = await node.setup_and_login()
    c = node.client
    assert (await c.get(f"{BASE}/models/model-types/llm", headers=auth)).json() == {"data": []}
    assert (await c.get(f"{BASE}/default-model", params={"model_type": "llm"},
                        headers=auth)).json() == {"data": None}

    # a wrong key: 400 with the provider's own message, and nothing recorded
    models_url = f"{BASE}/model-providers/{COMPATIBLE}/models"
    wrong = await c.post(models_url, headers=auth,
                         json=compatible(provider, "qwen2.5", "llm", api_key="sk-wrong"))
    assert wrong.status_code == 400
    assert wrong.json() == {"code": "invalid_param", "status": 400,
                            "message": "Incorrect API key provided."}
    unknown = await c.post(models_url, headers=auth, json=compatible(provider, "gpt-9", "llm"))
    assert unknown.status_code == 400 and "does not exist" in unknown.json()["message"]
    missing = await c.post(models_url, headers=auth, json=compatible(
        provider, "qwen2.5", "llm", endpoint_url=""))
    assert missing.status_code == 400
    assert missing.json()["message"] == "Variable endpoint_url is required"
    assert (await c.get(f"{BASE}/models/model-types/llm", headers=auth)).json() == {"data": []}

    # the bare provider name works as well as the plugin-style one
    provider.reset()
    saved = await c.post(f"{BASE}/model-providers/openai_api_compatible/models", headers=auth,
                         json=compatible(provider, "qwen2.5", "llm"))
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"result": "success"}
    (check,) = provider.chat_requests  # validated with one small real request
    assert check.body["model"] == "qwen2.5" and check.body["max_tokens"] == 5
    # a completion-mode model is checked on the legacy /completions endpoint
    completion = await c.post(models_url, headers=auth, json=compatible(
        provider, "qwen2.5-base", "llm", mode="completion"))
    assert completion.status_code == 200, completion.text
    assert provider.requests_to("/v1/completions")[0].body == {
        "model": "qwen2.5-base", "prompt": "ping", "max_tokens": 5}
    await c.request("DELETE", models_url, headers=auth,
                    json={"model": "qwen2.5-base", "model_type": "llm"})
    for model, model_type in (("bge-m3", "text-embedding"), ("rerank-1", "rerank")):
        response = await c.post(models_url, headers=auth,
                                json=compatible(provider, model, model_type))
        assert response.status_code == 200, response.text
    assert provider.calls("/embeddings") == 1 and provider.calls("/rerank") == 1

    listed = (await c.get(f"{BASE}/models/model-types/llm", headers=auth)).json()["data"]
    assert [(p["provider"], p["status"], [m["model"] for m in p["models"]])
            for p in listed] == [(COMPATIBLE, "active", ["qwen2.5"])]
    (llm,) = listed[0]["models"]
    assert llm["model_properties"] == {"context_size": 32768, "mode": "chat"}
    assert (llm["fetch_from"], llm["model_type"], llm["status"]) == (
        "customizable-model", "llm", "active")

    shown = (await c.get(f"{models_url}/credentials", headers=auth,
                         params={"model": "qwen2.5", "model_type": "llm"})).json()
    assert shown["credentials"]["api_key"] == "sk-fak************89"
    assert shown["credentials"]["endpoint_url"] == provider.base_url

    providers = (await c.get(f"{BASE}/model-providers", headers=auth)).json()["data"]
    status = {p["provider"]: p["custom_configuration"]["status"] for p in providers}
    assert status == {OPENAI: "no-configure", COMPATIBLE: "active"}
    form = next(p for p in providers if p["provider"] == COMPATIBLE)["model_credential_schema"]
    assert [f["variable"] for f in form["credential_form_schemas"]] == [
        "api_key", "endpoint_url", "mode", "context_size", "max_tokens_to_sample",
        "function_calling_type", "structured_output_support"]

    # the default model, then the lookup everything that calls a model uses
    default = await c.post(f"{BASE}/default-model", headers=auth, json={"model_settings": [
        {"model_type": "llm", "provider": "openai_api_compatible", "model": "qwen2.5"},
        {"model_type": "tts", "provider": None, "model": None}]})
    assert default.status_code == 200, default.text
    got = (await c.get(f"{BASE}/default-model", params={"model_type": "llm"},
                       headers=auth)).json()["data"]
    assert (got["model"], got["model_type"], got["provider"]["provider"]) == (
        "qwen2.5", "llm", COMPATIBLE)
    bad_default = await c.post(f"{BASE}/default-model", headers=auth, json={"model_settings": [
        {"model_type": "llm", "provider": COMPATIBLE, "model": "not-saved"}]})
    assert bad_default.status_code == 400

    engine, secret = node.container.engine, node.container.settings.SECRET_KEY
    tenant = await _tenant_of(node)
    model = await resolve_model(engine, secret, tenant, "llm")
    assert (model.model, model.api_key, model.context_size, model.max_tokens) == (
        "qwen2.5", KEY, 32768, 2048)
    answer = await model.client().chat(model.model, [{"role": "user", "content": "hi"}])
    assert answer.content == "Echo: hi"
    with pytest.raises(ProviderNotInitialized):
        await resolve_model(engine, secret, tenant, "speech2text")
    # a text-embedding model's size was measured when it was saved: it can index at once
    embedding = await resolve_model(engine, secret, tenant, "text-embedding")
    assert (embedding.model, embedding.dimensions) == ("bge-m3", provider.dimensions)
    vector = await embedding.embeddings().embed_query("hello there")
    assert len(vector) == provider.dimensions

    # saved again with the secret left hidden, as Dify's console sends it: the stored key
    # is kept (and checked again), the other fields change
    provider.reset()
    again = await c.post(models_url, headers=auth, json=compatible(
        provider, "qwen2.5", "llm", api_key="[__HIDDEN__]", context_size="8192"))
    assert again.status_code == 200, again.text
    assert provider.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"
    model = await resolve_model(engine, secret, tenant, "llm")
    assert (model.api_key, model.context_size) == (KEY, 8192)

    deleted = await c.request("DELETE", models_url, headers=auth,
                              json={"model": "rerank-1", "model_type": "rerank"})
    assert deleted.status_code == 204
    assert (await c.get(f"{BASE}/models/model-types/rerank", headers=auth)).json() == {
        "data": []}

    # another workspace sees none of it
    rival = await add_account_with_workspace(node, "rival@example.com")
    assert (await c.get(f"{BASE}/models/model-types/llm", headers=rival)).json() == {"data": []}


async def _tenant_of(node: Node) -> UUID | None:
    return await queries.current_workspace_of(node.container.engine,
                                              account_id_for("owner@example.com"))


async def test_openai_provider_credentials_and_the_service_api(
        node: Node, provider: FakeOpenAIServer) -> None:
    auth = await node.setup_and_login()
    c = node.client
    url = f"{BASE}/model-providers/openai/credentials"
    wrong = await c.post(url, headers=auth, json={"credentials": {
        "openai_api_key": "sk-nope", "openai_api_base": provider.base_url}})
    assert wrong.status_code == 400
    assert wrong.json()["message"] == "Incorrect API key provided."
    provider.reset()
    saved = await c.post(url, headers=auth, json={"credentials": {
        "openai_api_key": KEY, "openai_api_base": provider.base_url}})
    assert saved.status_code == 201, saved.text
    assert provider.calls("/models") == 1  # the key opened the model list
    shown = (await c.get(url, headers=auth)).json()["credentials"]
    assert shown == {"openai_api_key": "sk-fak************89",
                     "openai_api_base": provider.base_url}

    key = (await c.post("/console/api/datasets/api-keys", headers=auth)).json()["token"]
    service = await c.get("/v1/workspaces/current/models/model-types/text-embedding",
                          headers={"Authorization": f"Bearer {key}"})
    assert service.status_code == 200, service.text
    (entry,) = service.json()["data"]
    assert entry["provider"] == OPENAI and entry["status"] == "active"
    assert {"provider", "label", "icon_small", "status", "models", "tenant_id",
            "icon_small_dark"} <= entry.keys()
    embedding = next(m for m in entry["models"] if m["model"] == "text-embedding-3-small")
    assert embedding == {
        "model": "text-embedding-3-small",
        "label": {"en_US": "text-embedding-3-small", "zh_Hans": "text-embedding-3-small"},
        "model_type": "text-embedding", "features": None, "fetch_from": "predefined-model",
        "model_properties": {"context_size": 8191}, "status": "active", "deprecated": False,
        "load_balancing_enabled": False, "has_invalid_load_balancing_configs": False}
    bad_type = await c.get("/v1/workspaces/current/models/model-types/painting",
                           headers={"Authorization": f"Bearer {key}"})
    assert bad_type.status_code == 400
    unauthorised = await c.get("/v1/workspaces/current/models/model-types/llm")
    assert unauthorised.status_code == 401

    removed = await c.delete(url, headers=auth)
    assert removed.status_code == 204
    assert (await c.get(url, headers=auth)).json() == {"credentials": None}


async def test_provider_keys_never_appear_in_plaintext(
        node: Node, provider: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    published = record_publishes(node, monkeypatch)
    auth = await node.setup_and_login()
    c = node.client
    saved = await c.post(f"{BASE}/model-providers/{COMPATIBLE}/models", headers=auth,
                         json=compatible(provider, "qwen2.5", "llm"))
    assert saved.status_code == 200, saved.text
    refused = await c.post(f"{BASE}/model-providers/{COMPATIBLE}/models", headers=auth,
                           json=compatible(provider, "qwen2.5", "llm",
                                           api_key="sk-refused-secret-987654"))
    assert refused.status_code == 400
    openai = await c.post(f"{BASE}/model-providers/{OPENAI}/credentials", headers=auth,
                          json={"credentials": {"openai_api_key": KEY,
                                                "openai_api_base": provider.base_url}})
    assert openai.status_code == 201

    seen = published + await everything_recorded(
        node, "console_v1.custom_models", "console_v1.provider_credentials")
    assert any(b"CustomModelSaved" in blob for blob in seen)
    assert any(b"ProviderCredentialsSaved" in blob for blob in seen)
    logged = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    for secret in (KEY, "sk-refused-secret-987654"):
        assert not [blob[:200] for blob in seen if secret.encode() in blob], secret
        assert not [line[:200] for line in logged if secret in line], secret


async def test_a_dataset_embeds_with_the_workspace_model(
        node: Node, provider: FakeOpenAIServer) -> None:
    auth = await node.setup_and_login()
    c = node.client
    saved = await c.post(f"{BASE}/model-providers/{COMPATIBLE}/models", headers=auth,
                         json=compatible(provider, "bge-m3", "text-embedding"))
    assert saved.status_code == 200, saved.text
    token = (await c.post("/console/api/datasets/api-keys", headers=auth)).json()["token"]
    key = {"Authorization": f"Bearer {token}"}

    unknown = await c.post("/v1/datasets", headers=key, json={
        "name": "Nope", "indexing_technique": "high_quality",
        "embedding_model_provider": "openai_api_compatible", "embedding_model": "bge-xl"})
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "provider_not_initialize"

    created = await c.post("/v1/datasets", headers=key, json={
        "name": "Remote", "indexing_technique": "high_quality",
        "embedding_model_provider": "openai_api_compatible", "embedding_model": "bge-m3"})
    assert created.status_code == 200, created.text
    dataset = created.json()
    assert (dataset["embedding_model_provider"], dataset["embedding_model"]) == (
        COMPATIBLE, "bge-m3")
    provider.reset()
    paragraphs = ["Kettles boil water for green tea.", "Bicycles need oil on the chain.",
                  "Servers log every request they answer."]
    document = await create_text_document(node, key, dataset["id"], "notes",
                                          "\n\n".join(paragraphs))
    await wait_indexed(node.client, key, dataset["id"], document["batch"])
    embedded = [t for r in provider.embedding_requests for t in r.body["input"]]
    assert sorted(embedded) == sorted(paragraphs)  # the workspace's model embedded them
    assert {r.body["model"] for r in provider.embedding_requests} == {"bge-m3"}

    found = await c.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key, json={
        "query": "oil for the bicycle chain", "retrieval_model": {
            "search_method": "semantic_search", "top_k": 1}})
    assert found.status_code == 200, found.text
    assert [r["segment"]["content"] for r in found.json()["records"]] == [paragraphs[1]]
    assert provider.embedding_requests[-1].body["input"] == ["oil for the bicycle chain"]
