"""The indexing worker is SIGKILLed twice while 50 documents are indexed, or paused (SIGSTOP)
past its partition lease while another member takes over and then resumed: every document
completes, with exactly the segments and vectors a clean run produces. An attempt that
outlasts the lease while its worker is alive keeps its partition: it is never started
twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embeddings.local_minilm import LocalMiniLM
from indexing.clean import clean_text
from indexing.split import ProcessRule, split_text
from schemas.knowledge.naming import vector_collection
from tests.e2e.test_knowledge import CUSTOM_RULE
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import eventually, node_settings, running_node

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 5.0  # the Redis bus's partition lease (RedisStreamsBus default)
WORDS = ("ledger harbor quartz meadow signal copper lantern orbit velvet summit canyon "
         "prism falcon ember tundra cobalt willow raven glacier saffron").split()


def corpus(documents: int) -> list[str]:
    rng = random.Random(50)
    return ["\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 60)))
                        for _ in range(rng.randint(4, 10))) for _ in range(documents)]


def spawn_indexer(env: dict[str, str], member: str = "indexer-1") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--roles",
         "knowledge.indexing-priority,knowledge.indexing-bulk", "--member", member],
        env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_indexing_worker_killed_twice_loses_and_duplicates_nothing(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
    tmp_path: Path,
) -> None:
    async def kill_twice(env: dict[str, str], completed: Callable[[], Any]) -> None:
        worker = spawn_indexer(env)
        try:
            for threshold in (5, 25):  # kill mid-run, twice
                await eventually(lambda t=threshold: _at_least(completed, t), timeout=180)
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                worker = spawn_indexer(env)
            await eventually(lambda: _at_least(completed, 50), timeout=300, interval=0.5)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()

    await _index_under_fault(postgres, fresh_database, redis_url, tmp_path, 50, kill_twice)


async def test_indexing_worker_paused_past_its_lease_loses_and_duplicates_nothing(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
    tmp_path: Path,
) -> None:
    """Two members split the partitions; one is stopped (SIGSTOP) mid-run for longer than
    its lease, the other takes its partitions over; then the first resumes (SIGCONT) with
    its half-done jobs, and must not undo or duplicate the new owner's work."""

    async def pause_one(env: dict[str, str], completed: Callable[[], Any]) -> None:
        first, second = spawn_indexer(env, "indexer-1"), spawn_indexer(env, "indexer-2")
        try:
            await eventually(lambda: _at_least(completed, 3), timeout=180)
            first.send_signal(signal.SIGSTOP)
            await asyncio.sleep(LEASE_SECONDS * 2)  # its leases lapse; the other takes over
            await eventually(lambda: _at_least(completed, 12), timeout=180)
            first.send_signal(signal.SIGCONT)
            await eventually(lambda: _at_least(completed, 24), timeout=300, interval=0.5)
        finally:
            for worker in (first, second):
                worker.send_signal(signal.SIGCONT)
                worker.send_signal(signal.SIGKILL)
                worker.wait()

    await _index_under_fault(postgres, fresh_database, redis_url, tmp_path, 24, pause_one)


async def test_indexing_attempt_longer_than_the_lease_is_not_started_twice(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
    tmp_path: Path,
) -> None:
    """Two members; one document's attempt waits on a slow embedding endpoint for several
    leases and poll intervals (no fetch meanwhile). Its member keeps renewing the lease, so
    the other member never takes the job over: each chunk is embedded once."""
    with FakeOpenAIServer(api_key="sk-embed", dimensions=64) as embeddings:
        settings = node_settings(
            postgres, fresh_database("ixlease"), redis_url,
            OPENDAL_FS_ROOT=str(tmp_path / "storage"), EMBEDDING_PROVIDER="openai_compatible",
            EMBEDDING_API_BASE=embeddings.base_url, EMBEDDING_API_KEY="sk-embed",
            # A lease long enough for a loaded machine's late rounds; no fetch for 1 s would
            # be taken for a hung member if work in flight did not count.
            EMBEDDING_DIMENSIONS=64, REDIS_BUS_LEASE_SECONDS=3.0,
            CONSUMER_MAX_POLL_INTERVAL_SECONDS=1.0)
        roles = ["relay", "commands", "projections", "knowledge.cleanup"]
        async with running_node(settings, roles=roles) as node:
            auth = await node.setup_and_login()
            token = (await node.client.post("/console/api/datasets/api-keys",
                                            headers=auth)).json()
            key = {"Authorization": f"Bearer {token['token']}"}
            dataset = (await node.client.post("/v1/datasets", headers=key, json={
                "name": "Slow", "indexing_technique": "high_quality"})).json()
            env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
            workers = [spawn_indexer(env, "indexer-1"), spawn_indexer(env, "indexer-2")]
            try:
                embeddings.reset()
                embeddings.delay_next(4.0, count=3)  # each of the attempt's batches
                body = "\n\n".join(" ".join(WORDS[(i + j) % len(WORDS)] for j in range(12))
                                    for i in range(70))
                r = await node.client.post(
                    f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
                    json={"name": "slow", "text": body, "process_rule": CUSTOM_RULE})
                assert r.status_code == 200, r.text
                document = r.json()["document"]["id"]

                async def completed() -> int:
                    async with node.container.engine.connect() as conn:
                        return int((await conn.execute(text(
                            "SELECT count(*) FROM console_v1.documents WHERE id = :d"
                            " AND indexing_status = 'completed'"),
                            {"d": document})).scalar() or 0)

                await eventually(completed, timeout=120, interval=0.5)
            finally:
                for worker in workers:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait()
            async with node.container.engine.connect() as conn:
                segments = (await conn.execute(text(
                    "SELECT count(*) FROM console_v1.segments WHERE document_id = :d"),
                    {"d": document})).scalar()
            embedded = [t for r in embeddings.embedding_requests for t in r.body["input"]]
            assert segments is not None and segments > 64  # three batches, each slow
            assert len(embedded) == segments  # every chunk once: no second run of the job


async def _index_under_fault(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
    tmp_path: Path, documents: int,
    fault: Callable[[dict[str, str], Callable[[], Any]], Awaitable[None]],
) -> None:
    settings = node_settings(postgres, fresh_database("ixfault"), redis_url,
                             OPENDAL_FS_ROOT=str(tmp_path / "storage"))
    texts = corpus(documents)
    rule = ProcessRule.from_dify(CUSTOM_RULE)
    count = LocalMiniLM().count_tokens
    expected = [len(split_text(clean_text(t, rule.pre_processing), rule.segmentation, count,
                               merge_pieces=False)) for t in texts]

    # Everything but indexing runs here; indexing runs in processes the fault acts on.
    roles = ["relay", "commands", "projections", "knowledge.cleanup"]
    async with running_node(settings, roles=roles) as node:
        auth = await node.setup_and_login()
        token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
        key = {"Authorization": f"Bearer {token['token']}"}
        dataset = (await node.client.post("/v1/datasets", headers=key, json={
            "name": "Fault", "indexing_technique": "high_quality"})).json()
        ids = []
        for i, body in enumerate(texts):
            r = await node.client.post(
                f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
                json={"name": f"doc-{i:02d}", "text": body, "process_rule": CUSTOM_RULE})
            assert r.status_code == 200, r.text
            ids.append(r.json()["document"]["id"])

        async def completed() -> int:
            async with node.container.engine.connect() as conn:
                return int((await conn.execute(text(
                    "SELECT count(*) FROM console_v1.documents WHERE dataset_id = :d"
                    " AND indexing_status = 'completed'"), {"d": dataset["id"]})).scalar() or 0)

        await fault({**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}, completed)

        engine, vectors = node.container.engine, node.container.vectors
        collection = vector_collection(UUID(dataset["id"]), dataset["embedding_model_provider"],
                                   dataset["embedding_model"])
        async with engine.connect() as conn:
            rows = dict((await conn.execute(text(
                "SELECT d.id::text, count(s.id) FROM console_v1.documents d"
                " LEFT JOIN console_v1.segments s ON s.document_id = d.id"
                " AND s.attempt = d.split_attempt WHERE d.dataset_id = :d GROUP BY d.id"),
                {"d": dataset["id"]})).all())
            created_events = (await conn.execute(text(
                "SELECT count(*) FROM stored_events WHERE topic = 'Segment:SegmentCreated'"
            ))).scalar()
        assert [rows[i] for i in ids] == expected
        assert created_events == sum(expected)  # no segment was recorded twice
        assert [await vectors.count(collection, i) for i in ids] == expected
        assert await vectors.count(collection) == sum(expected)


async def _at_least(check: Callable[[], object], n: int) -> bool:
    return await check() >= n  # type: ignore[operator, misc]
