"""Reranking over HTTP: the workspace's rerank model (a fake server speaking Cohere/Jina's
`/rerank`) decides the order of retrieval results; `score_threshold` applies to its scores;
hybrid search weighs its halves by Dify's `weights`; no rerank model is Dify's error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_knowledge import FACTS, create_text_document, dataset_key, wait_indexed
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node

KEY = "sk-rerank-test-key-000"
LIGHTHOUSE, QUESTION = FACTS[0]
OTTER = FACTS[6][0]  # the mascot: nothing to do with the question


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY, models={"rerank-1"}) as fake:
        yield fake


async def indexed_dataset(node: Node, key: dict[str, str]) -> str:
    created = await node.client.post("/v1/datasets", headers=key, json={
        "name": "Handbook", "indexing_technique": "high_quality"})
    assert created.status_code == 200, created.text
    dataset_id: str = created.json()["id"]
    document = await create_text_document(node, key, dataset_id, "facts",
                                          "\n\n".join(fact for fact, _ in FACTS))
    await wait_indexed(node.client, key, dataset_id, document["batch"])
    return dataset_id


async def retrieve(node: Node, key: dict[str, str], dataset_id: str, query: str,
                   **retrieval: Any) -> Any:
    return await node.client.post(f"/v1/datasets/{dataset_id}/retrieve", headers=key, json={
        "query": query, "retrieval_model": {"search_method": "semantic_search", "top_k": 4,
                                            **retrieval}})


def contents(answer: Any) -> list[str]:
    return [r["segment"]["content"] for r in answer.json()["records"]]


async def test_the_rerank_model_decides_the_top_result(
        node: Node, provider: FakeOpenAIServer) -> None:
    key = await dataset_key(node)
    auth = await node.console_login()
    dataset_id = await indexed_dataset(node, key)

    plain = await retrieve(node, key, dataset_id, QUESTION, top_k=10)
    assert plain.status_code == 200, plain.text
    assert contents(plain)[0] == LIGHTHOUSE
    otter_score = next(r["score"] for r in plain.json()["records"]
                       if r["segment"]["content"] == OTTER)
    assert otter_score < 0.5  # semantic search ranks the mascot far down

    # reranking asked for, but the workspace has no rerank model: Dify's error, not silence
    missing = await retrieve(node, key, dataset_id, QUESTION, reranking_enable=True)
    assert missing.status_code == 400
    assert missing.json() == {
        "code": "provider_not_initialize", "status": 400,
        "message": "No Embedding Model or Reranking Model available. Please configure a "
                   "valid provider in the Settings -> Model Provider."}

    saved = await node.client.post(
        "/console/api/workspaces/current/model-providers/openai_api_compatible/models",
        headers=auth, json={"model": "rerank-1", "model_type": "rerank", "credentials": {
            "api_key": KEY, "endpoint_url": provider.base_url}})
    assert saved.status_code == 200, saved.text

    # the reranker prefers the mascot: its order and its scores are the answer's
    provider.reset()
    provider.rerank_scorer = lambda query, doc: 0.95 if "otter" in doc else (
        0.4 if "lighthouse" in doc.lower() else 0.1)
    named = {"reranking_enable": True, "reranking_model": {
        "reranking_provider_name": "langgenius/openai_api_compatible/openai_api_compatible",
        "reranking_model_name": "rerank-1"}}
    reranked = await retrieve(node, key, dataset_id, QUESTION, **named)
    assert reranked.status_code == 200, reranked.text
    records = reranked.json()["records"]
    assert [r["segment"]["content"] for r in records[:2]] == [OTTER, LIGHTHOUSE]
    assert [r["score"] for r in records] == [0.95, 0.4, 0.1, 0.1]
    (request,) = provider.requests_to("/rerank")
    assert request.body["query"] == QUESTION and request.body["model"] == "rerank-1"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert set(request.body["documents"]) == {fact for fact, _ in FACTS}  # every candidate

    # the threshold applies to the reranker's scores (the mascot's own vector score is
    # below it, and the lighthouse's above it)
    strict = await retrieve(node, key, dataset_id, QUESTION, score_threshold_enabled=True,
                            score_threshold=0.5, **named)
    assert [(r["segment"]["content"], r["score"]) for r in strict.json()["records"]] == [
        (OTTER, 0.95)]

    # no model named: the workspace's (only) rerank model
    default = await retrieve(node, key, dataset_id, QUESTION, reranking_enable=True)
    assert contents(default)[0] == OTTER

    # weighted_score mode is not a model rerank: plain scores, no call
    calls = provider.calls("/rerank")
    weighted = await retrieve(node, key, dataset_id, QUESTION, reranking_enable=True,
                              reranking_mode="weighted_score")
    assert contents(weighted)[0] == LIGHTHOUSE and provider.calls("/rerank") == calls

    # the rerank server failing is Dify's completion_request_error
    provider.fail_next(5, status=500, path="/rerank")
    failed = await retrieve(node, key, dataset_id, QUESTION, **named)
    assert failed.status_code == 400
    assert failed.json()["code"] == "completion_request_error"


async def test_hybrid_search_weighs_its_halves_by_dify_weights(node: Node) -> None:
    key = await dataset_key(node)
    dataset_id = await indexed_dataset(node, key)
    query = "night train Vienna"

    def by_content(answer: Any) -> dict[str, float]:
        assert answer.status_code == 200, answer.text
        return {r["segment"]["content"]: r["score"] for r in answer.json()["records"]
                if r["score"] > 0}

    def weights(vector: float, keyword: float) -> dict[str, Any]:
        return {"search_method": "hybrid_search", "reranking_mode": "weighted_score",
                "top_k": 10, "weights": {
                    "weight_type": "customized",
                    "vector_setting": {"vector_weight": vector},
                    "keyword_setting": {"keyword_weight": keyword}}}

    semantic = by_content(await retrieve(node, key, dataset_id, query, top_k=10))
    full_text = by_content(await retrieve(node, key, dataset_id, query, top_k=10,
                                          search_method="full_text_search"))
    assert semantic.keys() != full_text.keys()  # the halves differ, so weights matter
    only_vector = by_content(await retrieve(node, key, dataset_id, query,
                                            **weights(1.0, 0.0)))
    only_keyword = by_content(await retrieve(node, key, dataset_id, query,
                                             **weights(0.0, 1.0)))
    assert only_vector == pytest.approx(semantic)
    assert only_keyword == pytest.approx(full_text)
    mixed = by_content(await retrieve(node, key, dataset_id, query, **weights(0.3, 0.7)))
    for content, score in mixed.items():
        assert score == pytest.approx(0.3 * semantic.get(content, 0.0)
                                      + 0.7 * full_text.get(content, 0.0))
