"""Hit counts over HTTP: retrievals record the segments they returned (batched into one
event per dataset and window), the projection counts them per segment, the segment answers
show them, and applying the event again never counts twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from projections.runner import ProjectionRunner
from projections.tables import PROJECTION_NAME
from schemas.knowledge.events import SegmentsHit
from tests.e2e.test_knowledge import FACTS, create_text_document, dataset_key, wait_indexed
from tests.harness import Node, eventually, node_settings, running_node

WINDOW = 3600.0  # seconds: the window closes when the test says (as a shutdown closes it)


@pytest.fixture(params=[WINDOW])
async def node(request: pytest.FixtureRequest, postgres: EmbeddedPostgres,
               fresh_database: Callable[..., str], redis_url: str) -> AsyncIterator[Node]:
    settings = node_settings(postgres, fresh_database("hits"), redis_url,
                             HIT_COUNT_FLUSH_SECONDS=request.param)
    async with running_node(settings) as n:
        yield n


async def test_retrievals_count_hits_per_segment_once(node: Node) -> None:
    key = await dataset_key(node)
    created = await node.client.post("/v1/datasets", headers=key, json={
        "name": "Handbook", "indexing_technique": "high_quality"})
    dataset_id = created.json()["id"]
    document = await create_text_document(node, key, dataset_id, "facts",
                                          "\n\n".join(fact for fact, _ in FACTS))
    await wait_indexed(node.client, key, dataset_id, document["batch"])
    document_id = document["document"]["id"]
    segments_url = f"/v1/datasets/{dataset_id}/documents/{document_id}/segments"

    async def hit_counts() -> dict[str, int]:
        answer = await node.client.get(segments_url, headers=key)
        return {s["id"]: s["hit_count"] for s in answer.json()["data"] if s["hit_count"]}

    assert await hit_counts() == {}
    returned: Counter[str] = Counter()
    asked = [("retrieve", q) for _, q in FACTS[:4] + FACTS[:2]]  # two questions asked twice
    asked += [("hit-testing", FACTS[0][1])]
    for path, question in asked:
        answer = await node.client.post(f"/v1/datasets/{dataset_id}/{path}", headers=key,
                                        json={"query": question, "retrieval_model": {
                                            "search_method": "semantic_search", "top_k": 2}})
        assert answer.status_code == 200, answer.text
        returned.update(r["segment"]["id"] for r in answer.json()["records"])
    assert sum(returned.values()) == 2 * len(asked)
    await asyncio.sleep(0.5)
    assert await hit_counts() == {}  # batched, not written one by one
    for hook in node.app.state.on_shutdown:  # the window closes (here: the server stops)
        await hook()

    async def counted() -> dict[str, int] | None:
        counts = await hit_counts()
        return counts if counts == dict(returned) else None

    await eventually(counted, timeout=20)
    single = await node.client.get(f"{segments_url}/{next(iter(returned))}", headers=key)
    assert single.json()["data"]["hit_count"] == returned[next(iter(returned))]

    # one event for the whole window: retrievals never write one by one
    store = node.container.store
    batches = [e for e in store.read_from(0, 100_000) if isinstance(e.payload, SegmentsHit)]
    assert len(batches) == 1
    assert sorted((str(h.segment_id), h.count) for h in batches[0].payload.hits) == sorted(
        returned.items())

    # the same event applied again (a redelivery, a replay into the live projection)
    active = node.container.read_models.active()
    runner = ProjectionRunner(node.container.engine, node.container.projections[PROJECTION_NAME],
                              store, active.schema)
    assert await runner.apply(batches[0]) is False
    await asyncio.sleep(0.2)
    assert await hit_counts() == dict(returned)



@pytest.mark.parametrize("node", [0.2], indirect=True)
async def test_a_window_closes_by_itself(node: Node) -> None:
    key = await dataset_key(node)
    created = await node.client.post("/v1/datasets", headers=key, json={
        "name": "Tiny", "indexing_technique": "high_quality"})
    dataset_id = created.json()["id"]
    document = await create_text_document(node, key, dataset_id, "one", FACTS[2][0])
    await wait_indexed(node.client, key, dataset_id, document["batch"])
    for _ in range(2):
        answer = await node.client.post(f"/v1/datasets/{dataset_id}/retrieve", headers=key,
                                        json={"query": FACTS[2][1]})
        assert [r["segment"]["hit_count"] for r in answer.json()["records"]] in ([0], [1])

    async def counted() -> bool:
        answer = await node.client.get(
            f"/v1/datasets/{dataset_id}/documents/{document['document']['id']}/segments",
            headers=key)
        return [s["hit_count"] for s in answer.json()["data"]] == [2]

    await eventually(counted, timeout=20)
