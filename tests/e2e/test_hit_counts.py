"""Hit counts over HTTP: retrievals record the segments they returned (batched into one
event per dataset and window), the projection counts them per segment, the segment answers
show them, and applying the event again never counts twice."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from uuid import UUID

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
from gateway.knowledge.hits import SegmentHitBatcher
from projections.runner import ProjectionRunner
from projections.tables import PROJECTION_NAME
from schemas.knowledge.events import SegmentsHit
from tests.e2e.test_knowledge import (
    FACTS,
    create_dataset,
    create_text_document,
    dataset_key,
    wait_indexed,
)
from tests.harness import Node, eventually, node_settings, record_publishes, running_node

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


@pytest.fixture
async def node_on_own_redis(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
                            own_redis: EmbeddedRedis) -> AsyncIterator[Node]:
    settings = node_settings(postgres, fresh_database("hits"), own_redis.url,
                             HIT_COUNT_FLUSH_SECONDS=0.2)
    async with running_node(settings) as n:
        yield n


async def test_a_shutdown_during_a_flush_publishes_every_dataset_once(
        node_on_own_redis: Node, own_redis: EmbeddedRedis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway stops while a window is going out (its first dataset's command is held
    by a paused Redis, the others wait their turn): every dataset's hits still arrive,
    each once."""
    node = node_on_own_redis
    key = await dataset_key(node)
    segments_urls: dict[str, str] = {}
    hit: dict[UUID, tuple[UUID, UUID]] = {}  # dataset -> (document, segment) retrieved
    for n, (fact, question) in enumerate(FACTS[:3]):
        dataset_id = (await create_dataset(node, key, f"Tiny {n}"))["id"]
        document = await create_text_document(node, key, dataset_id, "one", fact)
        await wait_indexed(node.client, key, dataset_id, document["batch"])
        answer = await node.client.post(f"/v1/datasets/{dataset_id}/retrieve", headers=key,
                                        json={"query": question})
        [record] = answer.json()["records"]
        hit[UUID(dataset_id)] = (UUID(record["segment"]["document_id"]),
                                 UUID(record["segment"]["id"]))
        segments_urls[dataset_id] = (
            f"/v1/datasets/{dataset_id}/documents/{document['document']['id']}/segments")

    async def hit_counts() -> dict[str, list[int]]:
        return {d: [s["hit_count"] for s in (await node.client.get(
            url, headers=key)).json()["data"]] for d, url in segments_urls.items()}

    await eventually(hit_counts, expect={d: [1] for d in segments_urls})  # windows of one

    batcher: SegmentHitBatcher = node.app.state.segment_hits
    [tenant_id] = {e.tenant_id for d in hit for e in node.container.store.load(d)}
    assert tenant_id is not None
    published = record_publishes(node, monkeypatch)
    pid = own_redis.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        for dataset_id, pair in hit.items():  # one window: two more hits per dataset
            batcher.record(tenant_id, dataset_id, [pair, pair])

        async def posting() -> bool:
            return any(b"RecordSegmentHits" in message for message in published)

        await eventually(posting)  # the window's first command waits for the paused Redis
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0)  # the shutdown starts while that command is held
    finally:
        os.kill(pid, signal.SIGCONT)
    await closing

    await eventually(hit_counts, expect={d: [3] for d in segments_urls})
    commands = [m for m in published if b"RecordSegmentHits" in m]
    assert len(commands) == len(hit)  # one command per dataset: none posted twice
    assert all(any(str(d).encode() in m for m in commands) for d in hit)
