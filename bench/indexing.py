"""Benchmark: document indexing throughput, Eddy versus Dify's Celery architecture.

A fixed generated corpus (English prose, deterministic) goes through extract → clean →
split → embed (the local all-MiniLM-L6-v2) → pgvector, on the embedded Postgres and Redis:

* Eddy: gateway in this process (relay, commands, projections), uploads through the Service
  API, indexing workers as separate OS processes (`cli worker`), 1 and then 2 of them. Timed
  from the first upload until the read model shows every document `completed`.
* Celery baseline, same run, same servers: one task per document doing the same stages and
  updating a plain `documents` row, as Dify's document_indexing_task does; one worker with
  `--concurrency` 1 and then 2 (prefork). Timed from the first upload until every row is
  `completed`.
* The pure embedding cost of the same chunks (in-process, batches of 32), to show what share
  of the pipeline's worker time is the model itself.

CPU seconds per component (workers, gateway or client, Postgres, Redis) are measured over
each timed run too: on a shared machine wall time swings with other load, CPU much less.

    python -m bench.indexing [--documents 40] [--workers 1,2]

BLAS runs one thread per process (OPENBLAS_NUM_THREADS=1 unless set): then N worker
processes means N cores of embedding, for Eddy and Celery alike, instead of several
processes' thread pools fighting over the same two cores.
"""

from __future__ import annotations

import os

# Must be set before numpy loads (here, in the Eddy workers and in the Celery workers,
# which inherit this environment).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import asyncio
import functools
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import psycopg
import redis.asyncio as aioredis
from celery import Celery
from sqlalchemy import func, select

from adapters.bus.base import partition_for
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
from adapters.embeddings.local_minilm import LocalMiniLM
from adapters.storage.local import LocalStorage
from adapters.vector.base import VectorDocument
from adapters.vector.pgvector import PgVectorStore
from bench.procs import (
    CpuMeter,
    CpuProbes,
    check_alive,
    postmaster_pid,
    spawn,
    stop,
    this_process,
    tree_cpu,
)
from bootstrap import in_process_node
from config import Settings, load_settings
from contexts.knowledge import INDEXING_BULK
from indexing.clean import clean_text
from indexing.extract import extract_text
from indexing.split import ProcessRule, split_text
from migrations.runner import migrate
from projections.knowledge.tables import documents as read_documents
from schemas.knowledge.naming import content_hash
from workers.knowledge.indexing import EMBED_BATCH

# tests/e2e/test_knowledge.py's CUSTOM_RULE: one chunk per paragraph, at most 120 tokens.
PROCESS_RULE: dict[str, Any] = {"mode": "custom", "rules": {
    "pre_processing_rules": [{"id": "remove_extra_spaces", "enabled": True},
                             {"id": "remove_urls_emails", "enabled": False}],
    "segmentation": {"separator": "\\n\\n", "max_tokens": 120, "chunk_overlap": 0}}}
RULE = ProcessRule.from_dify(PROCESS_RULE)
CELERY_COLLECTION = "celery_bench"
UPLOAD_CONCURRENCY = 4  # a client uploading a folder a few files at a time
PROGRESS_EVERY = 5.0  # seconds between progress lines
POLL_INTERVAL = 0.3  # completion polling, the same for both systems


# --- corpus -------------------------------------------------------------------------------

_OPENERS = ("", "", "", "In practice, ", "As a rule, ", "Since last spring, ", "Every week, ",
            "According to the handbook, ", "After the audit, ", "On most days, ",
            "For safety reasons, ", "Unless told otherwise, ")
_SUBJECTS = ("the harbour authority", "our support team", "the night shift",
             "a visiting engineer", "the finance office", "every new hire", "the city council",
             "the maintenance crew", "the research group", "most customers", "the warehouse",
             "the editorial board", "the volunteer firefighters", "the school library",
             "the regional bakery", "the tram operator", "the museum guides",
             "the data center staff")
_VERBS = ("reviews", "updates", "inspects", "publishes", "approves", "documents", "schedules",
          "reports on", "tests", "replaces", "discusses", "archives", "translates", "measures",
          "repairs", "compares")
_OBJECTS = ("the quarterly safety checklist", "the backup generators", "the refund requests",
            "the winter timetable", "the visitor survey results", "the cooling system",
            "the list of open invoices", "the fire escape routes", "the new loan policy",
            "the lighthouse logbook", "the recycling figures", "the onboarding guide",
            "the delivery routes", "the water quality samples", "the staff rota",
            "the printing press", "the rainfall records", "the ticket prices")
_TAILS = ("before the end of each month", "whenever the weather turns", "after every release",
          "with help from a local cooperative", "so that nobody is caught by surprise",
          "in a short meeting on Friday mornings", "and shares the notes with everyone",
          "because the regulator asks for it", "while the building is still quiet",
          "and files a copy in the shared archive", "unless the budget has already run out",
          "together with two colleagues from the north office", "at least twice a year",
          "to keep the insurance premium low", "long before the busy season begins")


def corpus(documents: int, seed: int = 2024) -> list[str]:
    """`documents` texts of 3-6 KB: paragraphs of 3-6 plain sentences, the same every run."""
    rng = random.Random(seed)
    texts = []
    for i in range(documents):
        target = rng.randint(3000, 6000)
        paragraphs = [f"Operations notes, volume {i + 1}"]
        size = len(paragraphs[0])
        while size < target:
            sentences = []
            for _ in range(rng.randint(3, 6)):
                opener = rng.choice(_OPENERS)
                subject = rng.choice(_SUBJECTS)
                subject = subject if opener else subject[0].upper() + subject[1:]
                sentences.append(f"{opener}{subject} {rng.choice(_VERBS)} "
                                 f"{rng.choice(_OBJECTS)} {rng.choice(_TAILS)}.")
            paragraph = " ".join(sentences)
            paragraphs.append(paragraph)
            size += len(paragraph) + 2
        texts.append("\n\n".join(paragraphs))
    return texts


def chunk_text(raw: bytes, filename: str, count_tokens: Callable[[str], int]) -> list[str]:
    """extract → clean → split exactly as the indexing worker does for a text upload."""
    text = extract_text(raw, filename, "text/plain").text
    cleaned = clean_text(text, RULE.pre_processing)
    return split_text(cleaned, RULE.segmentation, count_tokens, RULE.mode == "automatic")


# --- the Celery baseline (Dify's architecture) ---------------------------------------------
# Defined at module level because the Celery worker imports this module (-A bench.indexing).

celery_app = Celery("bench_indexing")
celery_app.conf.update(
    broker_url=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/1"),
    result_backend=os.environ.get("BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/2"),
    task_serializer="json", result_serializer="json", accept_content=["json"],
    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
)

CELERY_SCHEMA = """
CREATE TABLE documents (
    id uuid PRIMARY KEY, name text NOT NULL, source_key text NOT NULL,
    indexing_status text NOT NULL DEFAULT 'waiting', error text,
    processing_started_at timestamptz, parsing_completed_at timestamptz,
    cleaning_completed_at timestamptz, splitting_completed_at timestamptz,
    completed_at timestamptz, total_segments int, completed_segments int DEFAULT 0,
    worker_pid int);
CREATE TABLE segments (
    id uuid PRIMARY KEY, document_id uuid NOT NULL REFERENCES documents (id),
    position int NOT NULL, content text NOT NULL, word_count int NOT NULL,
    tokens int NOT NULL, index_node_hash text NOT NULL);
"""


@dataclass
class _TaskResources:
    """What one Celery worker process keeps between tasks (made after the prefork fork)."""

    loop: asyncio.AbstractEventLoop
    db: psycopg.Connection[Any]
    storage: LocalStorage
    vectors: PgVectorStore
    model: LocalMiniLM


_resources: _TaskResources | None = None


def _task_resources() -> _TaskResources:
    global _resources
    if _resources is None:
        _resources = _TaskResources(
            loop=asyncio.new_event_loop(),
            db=psycopg.connect(os.environ["BENCH_DB_DSN"], autocommit=True),
            storage=LocalStorage(Path(os.environ["BENCH_STORAGE_ROOT"])),
            vectors=PgVectorStore(os.environ["BENCH_DB_DSN"], max_pool_size=2),
            model=LocalMiniLM())
    return _resources


def _set_status(r: _TaskResources, document_id: str, status: str, stamp: str | None = None,
                **values: Any) -> None:
    # One committed UPDATE per stage, as Dify's IndexingRunner does, so the console can
    # show progress. Column names come from this file only, never from input.
    sets = ["indexing_status = %(status)s", *(f"{k} = %({k})s" for k in values)]
    if stamp:
        sets.append(f"{stamp} = now()")
    r.db.execute(f"UPDATE documents SET {', '.join(sets)} WHERE id = %(id)s",
                 {"status": status, "id": document_id, **values})


@celery_app.task(name="bench.index_document")  # type: ignore[untyped-decorator]
def index_document(document_id: str) -> int:
    """Dify's document_indexing_task for one document; returns its number of chunks."""
    r = _task_resources()
    try:
        row = r.db.execute("SELECT name, source_key FROM documents WHERE id = %s",
                           (document_id,)).fetchone()
        assert row is not None, document_id
        name, source_key = row
        _set_status(r, document_id, "parsing", "processing_started_at", worker_pid=os.getpid())
        raw = r.loop.run_until_complete(r.storage.load(source_key))
        text = extract_text(raw, name, "text/plain").text
        _set_status(r, document_id, "cleaning", "parsing_completed_at")
        cleaned = clean_text(text, RULE.pre_processing)
        _set_status(r, document_id, "splitting", "cleaning_completed_at")
        chunks = split_text(cleaned, RULE.segmentation, r.model.count_tokens,
                            RULE.mode == "automatic")
        ids = [str(uuid.uuid5(uuid.UUID(document_id), f"segment:{i}")) for i in range(len(chunks))]
        with r.db.transaction():  # the segment rows and the stage change: both or neither
            with r.db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO segments (id, document_id, position, content, word_count,"
                    " tokens, index_node_hash) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [(sid, document_id, i + 1, c, len(c), r.model.count_tokens(c),
                      content_hash(c)) for i, (sid, c) in enumerate(zip(ids, chunks, strict=True))])
            _set_status(r, document_id, "indexing", "splitting_completed_at",
                        total_segments=len(chunks))
        for start in range(0, len(chunks), EMBED_BATCH):
            batch = chunks[start:start + EMBED_BATCH]
            vectors = r.model.embed_sync(batch).tolist()
            r.loop.run_until_complete(r.vectors.add_texts(CELERY_COLLECTION, [
                VectorDocument(id=sid, text=c, vector=v, metadata={
                    "document_id": document_id, "segment_id": sid, "doc_hash": content_hash(c)})
                for sid, c, v in zip(ids[start:], batch, vectors, strict=False)]))
            _set_status(r, document_id, "indexing", completed_segments=start + len(batch))
        _set_status(r, document_id, "completed", "completed_at")
        return len(chunks)
    except Exception as exc:
        _set_status(r, document_id, "error", error=repr(exc)[:500])
        raise


# --- shared helpers -------------------------------------------------------------------------


@dataclass
class RunResult:
    system: str
    workers: int
    documents: int
    chunks: int
    seconds: float
    upload_seconds: float
    per_worker: list[int]
    cpu: dict[str, float]  # CPU seconds during the timed run, per group of processes

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds


def _cpu_probes(pg: EmbeddedPostgres, redis: EmbeddedRedis, workers: Sequence[int],
                here: str) -> CpuProbes:
    """The CPU of a run's groups of processes: its workers, this process (named `here`:
    what it does in the run), Postgres, Redis."""
    pg_pid = postmaster_pid(pg)
    return {"workers": lambda: sum(tree_cpu(w) for w in workers), here: this_process,
            "postgres": lambda: tree_cpu(pg_pid), "redis": lambda: tree_cpu(redis.pid)}


def _check_alive(procs: Sequence[subprocess.Popen[bytes]], logs: Sequence[Path]) -> None:
    for proc, log in zip(procs, logs, strict=True):
        check_alive(proc, "worker", log)


async def _wait_until(label: str, total: int, timeout: float,
                      poll: Callable[[], Awaitable[int]], interval: float,
                      alive: Callable[[], None]) -> None:
    """Poll until `poll()` reports `total` done, printing progress now and then."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    last_print = start
    while True:
        done = await poll()
        now = loop.time()
        if done >= total:
            return
        alive()
        if now - start > timeout:
            raise TimeoutError(f"{label}: only {done}/{total} documents after {timeout:.0f} s")
        if now - last_print >= PROGRESS_EVERY:
            print(f"  {label}: {done}/{total} documents completed ({now - start:.0f} s)",
                  flush=True)
            last_print = now
        await asyncio.sleep(interval)


async def _gather_bounded(concurrency: int, jobs: Sequence[Callable[[], Awaitable[Any]]]
                          ) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs))


# --- Eddy -----------------------------------------------------------------------------------


def _eddy_settings(pg: EmbeddedPostgres, db: str, redis: EmbeddedRedis, root: Path) -> Settings:
    return load_settings(
        DB_HOST=pg.host, DB_PORT=pg.port, DB_USERNAME=pg.user, DB_PASSWORD="", DB_DATABASE=db,
        REDIS_HOST=redis.host, REDIS_PORT=redis.port,
        SECRET_KEY="bench-secret-key-0123456789-abcdef",
        EVENT_BUS="redis", EVENT_TOPIC_PREFIX=f"ix{uuid.uuid4().hex[:6]}.", LOG_LEVEL="WARNING",
        STORAGE_TYPE="opendal", OPENDAL_FS_ROOT=str(root), VECTOR_STORE="pgvector",
        EMBEDDING_PROVIDER="local",
        # Every upload to the bulk lane: all workers then share one consumer group.
        PRIORITY_LANE_MAX_BYTES=0,
        COMMAND_TIMEOUT_SECONDS=60, PROJECTION_WAIT_SECONDS=60,
    )


def _eddy_worker(settings: Settings, member: str, log: Path) -> subprocess.Popen[bytes]:
    """An indexing worker in its own process, as deployed (env as bench/commands.py)."""
    names = ("DB_HOST", "DB_PORT", "DB_USERNAME", "DB_DATABASE", "REDIS_HOST", "REDIS_PORT",
             "SECRET_KEY", "EVENT_TOPIC_PREFIX", "STORAGE_TYPE", "OPENDAL_FS_ROOT",
             "VECTOR_STORE", "EMBEDDING_PROVIDER", "COMMAND_PARTITIONS", "EVENT_PARTITIONS")
    env = {**os.environ, **{k: str(getattr(settings, k) or "") for k in names},
           "EVENT_BUS": settings.bus.value, "LOG_LEVEL": "WARNING"}
    return spawn(["-m", "cli", "worker", "--roles",
                  "knowledge.indexing-bulk,knowledge.indexing-priority", "--member", member],
                 env, log)


def _lease_keys(settings: Settings) -> list[str]:
    # adapters/bus/redis_streams.py's lease layout for the bulk lane's consumer group.
    meta = f"{settings.EVENT_TOPIC_PREFIX}_meta.group.{INDEXING_BULK.name}"
    return [f"{meta}.lease.{INDEXING_BULK.name}.{p}" for p in range(settings.EVENT_PARTITIONS)]


async def _lease_owners(client: aioredis.Redis, settings: Settings) -> list[str | None]:
    values = await client.mget(_lease_keys(settings))
    return [v.decode() if isinstance(v, bytes) else v for v in values]


async def _wait_for_group(client: aioredis.Redis, settings: Settings, members: int,
                          alive: Callable[[], None]) -> list[str | None]:
    """Until the workers have split the bulk lane's partitions among themselves, so the
    timed run starts with its final split (no rebalance mid-run)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive()
        owners = await _lease_owners(client, settings)
        if None not in owners and len(set(owners)) == members:
            return owners
        await asyncio.sleep(0.2)
    raise TimeoutError(f"indexing workers did not join the group: {owners}")


async def bench_eddy(pg: EmbeddedPostgres, redis: EmbeddedRedis, root: Path, workers: int,
                     texts: list[str]) -> RunResult:
    db = f"bench_eddy_{workers}w"
    pg.create_database(db)
    settings = _eddy_settings(pg, db, redis, root / f"storage-eddy-{workers}w")
    await asyncio.to_thread(migrate, settings)
    label = f"eddy {workers}w"
    async with in_process_node(settings, roles=["relay", "commands", "projections"],
                               member="bench-gateway") as (container, app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://bench", timeout=120)
        await client.post("/console/api/setup", json={
            "email": "bench@example.com", "name": "Bench", "password": "passw0rd1"})
        login = await client.post("/console/api/login", json={
            "email": "bench@example.com", "password": "passw0rd1"})
        auth = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}
        token = (await client.post("/console/api/datasets/api-keys", headers=auth)).json()
        key = {"Authorization": f"Bearer {token['token']}"}
        dataset = (await client.post("/v1/datasets", headers=key, json={
            "name": "Bench", "indexing_technique": "high_quality"})).json()
        base = f"/v1/datasets/{dataset['id']}"

        logs = [root / f"eddy-{workers}w-w{i + 1}.log" for i in range(workers)]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i, log in enumerate(logs):
                procs.append(_eddy_worker(settings, f"w{i + 1}", log))

            def alive() -> None:
                _check_alive(procs, logs)

            leases = aioredis.from_url(settings.redis_url())  # the bus's own keys
            try:
                owners = await _wait_for_group(leases, settings, workers, alive)
            finally:
                await leases.aclose()
            print(f"  {label}: workers joined, uploading {len(texts)} documents …", flush=True)
            probes = _cpu_probes(pg, redis, [p.pid for p in procs], "gateway")

            async def upload(i: int) -> dict[str, Any]:
                r = await client.post(f"{base}/document/create-by-text", headers=key, json={
                    "name": f"doc-{i:03d}", "text": texts[i], "process_rule": PROCESS_RULE})
                assert r.status_code == 200, r.text
                return r.json()  # type: ignore[no-any-return]

            meter = CpuMeter(probes)
            start = time.perf_counter()
            created = await _gather_bounded(
                UPLOAD_CONCURRENCY, [functools.partial(upload, i) for i in range(len(texts))])
            uploaded = time.perf_counter() - start

            dataset_id = uuid.UUID(dataset["id"])

            async def completed() -> int:
                # The read model the Service API lists from, read directly: polling the HTTP
                # list costs ~17 ms of gateway CPU a call, a harness cost Celery's SQL poll
                # does not pay. The API is checked once at the end.
                t = read_documents
                async with container.engine.connect() as conn:
                    rows = (await conn.execute(
                        select(t.c.indexing_status, func.count(), func.min(t.c.error))
                        .where(t.c.dataset_id == dataset_id).group_by(t.c.indexing_status))).all()
                counts = {status: (n, error) for status, n, error in rows}
                if "error" in counts:
                    raise RuntimeError(f"indexing failed: {counts['error'][1]}")
                return int(counts.get("completed", (0, None))[0])

            await _wait_until(label, len(texts), max(180.0, 8.0 * len(texts)), completed,
                              POLL_INTERVAL, alive)
            elapsed = time.perf_counter() - start
            cpu = meter.used()
        finally:
            for proc in procs:
                stop(proc)

        listed = (await client.get(f"{base}/documents", headers=key,
                                   params={"limit": 100})).json()
        assert listed["total"] == len(texts), listed["total"]
        assert all(d["indexing_status"] == "completed" for d in listed["data"]), listed

        chunks = 0
        for c in created:
            status = (await client.get(f"{base}/documents/{c['batch']}/indexing-status",
                                       headers=key)).json()["data"]
            chunks += sum(s["total_segments"] for s in status)
        await client.aclose()
    # Which worker got which document: the partition its id hashes to, and that
    # partition's owner. Keyed partitioning decides the split, not who is idle.
    split = {f"w{i + 1}": 0 for i in range(workers)}
    for c in created:
        owner = owners[partition_for(c["document"]["id"], settings.EVENT_PARTITIONS)]
        if owner in split:
            split[owner] += 1
    return RunResult("eddy", workers, len(texts), chunks, elapsed, uploaded,
                     list(split.values()), cpu)


# --- Celery ---------------------------------------------------------------------------------


def _celery_ping(expected: int) -> bool:
    replies = celery_app.control.ping(timeout=0.5) or []
    return len(replies) >= expected


async def bench_celery(pg: EmbeddedPostgres, redis: EmbeddedRedis, root: Path, workers: int,
                       texts: list[str]) -> RunResult:
    db = f"bench_celery_{workers}w"
    pg.create_database(db)
    dsn = pg.dsn(db)
    label = f"celery {workers}w"
    storage_root = root / f"storage-celery-{workers}w"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(CELERY_SCHEMA)
    vectors = PgVectorStore(dsn)
    await vectors.create(CELERY_COLLECTION, LocalMiniLM.DIMENSIONS)
    # Fresh broker and result databases, so nothing of the last run is redelivered.
    for url in (celery_app.conf.broker_url, celery_app.conf.result_backend):
        flush = aioredis.from_url(url)
        await flush.flushdb()
        await flush.aclose()
    env = {**os.environ, "BENCH_CELERY_BROKER": celery_app.conf.broker_url,
           "BENCH_CELERY_BACKEND": celery_app.conf.result_backend,
           "BENCH_DB_DSN": dsn, "BENCH_STORAGE_ROOT": str(storage_root)}
    log = root / f"celery-{workers}w.log"
    # One worker node with `workers` prefork processes (Celery's way to use more cores).
    proc = spawn(["-m", "celery", "-A", "bench.indexing:celery_app", "worker",
                   "-P", "prefork", "--concurrency", str(workers), "--loglevel", "WARNING",
                   "--without-gossip", "--without-mingle", "-n", f"bench{workers}@%h"], env, log)
    storage = LocalStorage(storage_root)
    db_conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        def alive() -> None:
            _check_alive([proc], [log])

        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(_celery_ping, 1):
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError("celery worker did not answer ping")
        print(f"  {label}: worker ready, uploading {len(texts)} documents …", flush=True)
        probes = _cpu_probes(pg, redis, [proc.pid], "client")

        async def upload(i: int) -> None:
            # Dify's upload request: file to storage, document row, then .delay().
            document_id = str(uuid.uuid4())
            name = f"doc-{i:03d}.txt"
            source_key = f"datasets/bench/{document_id}/source/{name}"
            await storage.save(source_key, texts[i].encode())
            async with db_conn.cursor() as cur:
                await cur.execute("INSERT INTO documents (id, name, source_key) VALUES"
                                  " (%s, %s, %s)", (document_id, name, source_key))
            await asyncio.to_thread(index_document.delay, document_id)

        meter = CpuMeter(probes)
        start = time.perf_counter()
        for i in range(len(texts)):
            await upload(i)
        uploaded = time.perf_counter() - start

        async def completed() -> int:
            async with db_conn.cursor() as cur:
                await cur.execute("SELECT indexing_status, count(*), min(error) FROM documents"
                                  " GROUP BY 1")
                counts = {s: (n, e) for s, n, e in await cur.fetchall()}
            if "error" in counts:
                raise RuntimeError(f"celery task failed: {counts['error'][1]}")
            return int(counts.get("completed", (0, None))[0])

        await _wait_until(label, len(texts), max(180.0, 8.0 * len(texts)), completed,
                          POLL_INTERVAL, alive)
        elapsed = time.perf_counter() - start
        cpu = meter.used()
        async with db_conn.cursor() as cur:
            await cur.execute("SELECT sum(total_segments) FROM documents")
            chunks = int((await cur.fetchone() or [0])[0])
            await cur.execute("SELECT count(*) FROM documents GROUP BY worker_pid ORDER BY 1 DESC")
            split = [int(n) for (n,) in await cur.fetchall()]
        stored = await vectors.count(CELERY_COLLECTION)
        if stored != chunks:
            raise RuntimeError(f"celery run stored {stored} vectors for {chunks} chunks")
    finally:
        stop(proc)
        await db_conn.close()
        await vectors.close()
    return RunResult("celery", workers, len(texts), chunks, elapsed, uploaded, split, cpu)


# --- embedding alone ------------------------------------------------------------------------


@dataclass
class EmbeddingCost:
    wall: float
    cpu: float


async def bench_embedding(chunks: list[str]) -> EmbeddingCost:
    """What LocalMiniLM alone takes for all chunks in batches of 32 (model already loaded)."""
    model = LocalMiniLM()
    await asyncio.to_thread(model.warm_up)
    cpu_start = this_process()
    start = last = time.perf_counter()
    for i in range(0, len(chunks), EMBED_BATCH):
        await model.embed_documents(chunks[i:i + EMBED_BATCH])
        if time.perf_counter() - last >= PROGRESS_EVERY:
            last = time.perf_counter()
            print(f"  embedding: {min(i + EMBED_BATCH, len(chunks))}/{len(chunks)} chunks "
                  f"({last - start:.0f} s)", flush=True)
    return EmbeddingCost(time.perf_counter() - start, this_process() - cpu_start)


# --- report ---------------------------------------------------------------------------------


def _report_run(r: RunResult, embed: EmbeddingCost) -> None:
    cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in r.cpu.items())
    print(f"  {r.system} {r.workers}w: {r.documents} docs, {r.chunks} chunks in "
          f"{r.seconds:.1f} s = {r.docs_per_s:.2f} docs/s, {r.chunks_per_s:.1f} chunks/s; "
          f"uploads took {r.upload_seconds:.1f} s; docs per worker {r.per_worker}\n"
          f"  {r.system} {r.workers}w: CPU seconds: {cpu}; embedding = "
          f"{embed.cpu / r.cpu['workers']:.0%} of the workers' CPU; load average now "
          f"{os.getloadavg()[0]:.1f}", flush=True)  # a shared machine shows up here


async def main_async(documents: int, workers: Sequence[int]) -> None:
    texts = corpus(documents)
    counter = LocalMiniLM()
    chunks = [c for i, t in enumerate(texts)
              for c in chunk_text(t.encode(), f"doc-{i:03d}.txt", counter.count_tokens)]
    kb = sum(len(t.encode()) for t in texts) / 1024
    print(f"{documents} documents ({kb:.0f} KB, {len(chunks)} chunks; custom rule: paragraphs,"
          f" max 120 tokens); workers {list(workers)}; OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    print("embedding only (LocalMiniLM in-process, batches of 32) …", flush=True)
    embed = await bench_embedding(chunks)
    print(f"embedding: {len(chunks)} chunks in {embed.wall:.1f} s wall, {embed.cpu:.1f} s CPU "
          f"= {len(chunks) / embed.wall:.1f} chunks/s (one process)", flush=True)

    root = Path(tempfile.mkdtemp(prefix="eddy-bench-indexing-"))
    pg: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    results: list[RunResult] = []
    try:
        pg = EmbeddedPostgres(root / "pg").start()
        redis = EmbeddedRedis(root / "redis").start()
        server = redis.url.rsplit("/", 1)[0]
        celery_app.conf.update(broker_url=f"{server}/1", result_backend=f"{server}/2")
        for n in workers:  # interleaved, so a change in machine load hits both systems
            for system, run in (("eddy", bench_eddy), ("celery", bench_celery)):
                print(f"running {system}, {n} worker process{'es' if n > 1 else ''} …",
                      flush=True)
                result = await run(pg, redis, root, n, texts)
                if result.chunks != len(chunks):
                    print(f"  warning: {system} made {result.chunks} chunks, expected "
                          f"{len(chunks)}", flush=True)
                _report_run(result, embed)
                results.append(result)
    finally:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)

    print("\nsummary: wall time from first upload to every document completed; CPU seconds"
          " in that time")
    print(f"{'':10} {'docs/s':>7} {'chunks/s':>9} {'wall s':>7} {'embed/wall':>11} "
          f"{'worker CPU':>11} {'embed/CPU':>10} {'other CPU':>10}")
    for r in results:
        other = sum(v for k, v in r.cpu.items() if k != "workers")
        print(f"{r.system:>6} {r.workers}w {r.docs_per_s:7.2f} {r.chunks_per_s:9.1f} "
              f"{r.seconds:7.1f} {embed.wall / (r.workers * r.seconds):11.0%} "
              f"{r.cpu['workers']:11.1f} {embed.cpu / r.cpu['workers']:10.0%} {other:10.1f}")
    print(f"embedding alone: {embed.wall:.1f} s wall, {embed.cpu:.1f} s CPU for {len(chunks)} "
          "chunks. embed/wall = embedding wall time / (workers * wall time); embed/CPU = "
          "embedding CPU / the workers' CPU; other = gateway or client, Postgres, Redis")
    by = {(r.system, r.workers): r for r in results}
    for n in workers:
        eddy, celery = by[("eddy", n)], by[("celery", n)]
        print(f"eddy / celery, {n} worker{'s' if n > 1 else ''}: "
              f"x{eddy.docs_per_s / celery.docs_per_s:.2f} throughput, "
              f"x{eddy.cpu['workers'] / celery.cpu['workers']:.2f} worker CPU", flush=True)
    for system in ("eddy", "celery"):
        one, many = by.get((system, 1)), by.get((system, max(workers)))
        if one and many and many is not one:
            print(f"{system} scaling 1 -> {many.workers} workers: "
                  f"x{many.docs_per_s / one.docs_per_s:.2f}", flush=True)


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=40)
    parser.add_argument("--workers", default="1,2",
                        help="worker process counts to run, comma-separated (default 1,2)")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(main_async(args.documents, workers))
    except KeyboardInterrupt:
        print("interrupted; servers and workers stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
