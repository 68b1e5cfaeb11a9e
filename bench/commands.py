"""Benchmark: commands through the gateway, and command-accepted → read-model-updated time,
on each bus. Baseline, measured in the same run on the same Postgres: the synchronous CRUD
write a Celery-era Dify does (one INSERT per request, read back at once).

    python -m bench.commands [--commands 300] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.tansu import TansuBroker
from adapters.embedded.valkey import EmbeddedRedis
from bootstrap import in_process_node
from config import Settings, load_settings
from migrations.runner import upgrade
from projections.platform import queries
from schemas.base import CommandEnvelope
from schemas.platform.commands import CreateApp
from schemas.topics import COMMANDS


def _settings(pg: EmbeddedPostgres, db: str, redis: EmbeddedRedis, kafka: str | None) -> Settings:
    return load_settings(
        DB_HOST=pg.host, DB_PORT=pg.port, DB_USERNAME=pg.user, DB_PASSWORD="", DB_DATABASE=db,
        REDIS_HOST=redis.host, REDIS_PORT=redis.port,
        SECRET_KEY="bench-secret-key-0123456789-abcdef",
        EVENT_BUS="kafka" if kafka else "redis", KAFKA_BOOTSTRAP_SERVERS=kafka or "",
        EVENT_TOPIC_PREFIX=f"b{uuid.uuid4().hex[:6]}.", LOG_LEVEL="WARNING",
        COMMAND_TIMEOUT_SECONDS=60, PROJECTION_WAIT_SECONDS=60,
    )


async def _gather_bounded(concurrency: int, jobs: list) -> list:  # type: ignore[type-arg]
    gate = asyncio.Semaphore(concurrency)

    async def run(job):  # type: ignore[no-untyped-def]
        async with gate:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs))


def _worker_process(settings: Settings) -> subprocess.Popen[bytes]:
    """The worker roles in their own process, as deployed: the gateway and the workers get
    a core each instead of sharing one interpreter."""
    env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
    return subprocess.Popen([sys.executable, "-m", "cli", "worker", "--member", "bench-worker"],
                            env=env, cwd=Path(__file__).resolve().parent.parent)


async def bench_bus(settings: Settings, n: int, concurrency: int) -> dict[str, float]:
    await asyncio.to_thread(
        upgrade, settings.database_dsn().replace("postgresql://", "postgresql+psycopg://", 1))
    worker = _worker_process(settings)
    try:
        return await _measure(settings, n, concurrency)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


async def _measure(settings: Settings, n: int, concurrency: int) -> dict[str, float]:
    async with in_process_node(settings, roles=[]) as (container, app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://bench", timeout=120)
        await client.post("/console/api/setup", json={
            "email": "bench@example.com", "name": "Bench", "password": "passw0rd1"})
        login = await client.post("/console/api/login", json={
            "email": "bench@example.com", "password": "passw0rd1"})
        auth = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}

        # 1. throughput through HTTP: each request returns once the read model shows the app
        async def create(i: int) -> int:
            r = await client.post("/console/api/apps", headers=auth,
                                  json={"name": f"bench {i}", "mode": "chat"})
            return r.status_code

        start = time.perf_counter()
        codes = await _gather_bounded(concurrency, [lambda i=i: create(i) for i in range(n)])
        elapsed = time.perf_counter() - start
        assert all(c == 201 for c in codes), codes

        # 2. latency: outcome stored (accepted) → read model updated, per command
        gateway = app.state.command_gateway
        account = await queries.account_by_email(container.engine, "bench@example.com")
        assert account is not None
        tenant = await queries.current_workspace_of(container.engine, account["id"])

        async def one(i: int) -> float:
            app_id = uuid.uuid4()
            command = CommandEnvelope.of(
                CreateApp(app_id=app_id, name=f"lat {i}", mode="chat"), aggregate_id=app_id,
                tenant_id=tenant, actor_id=account["id"], correlation_id=uuid.uuid4())
            await container.bus.publish(COMMANDS, str(app_id), command.to_json())
            outcome = await gateway.wait_outcome(command.command_id, 60)
            accepted = time.perf_counter()
            assert outcome is not None and outcome.position is not None
            assert await gateway.wait_for_projection(outcome.position, 60)
            return time.perf_counter() - accepted

        latencies = await _gather_bounded(concurrency, [lambda i=i: one(i) for i in range(n)])
        await client.aclose()
    latencies.sort()
    return {
        "commands_per_s": n / elapsed,
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def bench_baseline(pg: EmbeddedPostgres, db: str, n: int, concurrency: int) -> float:
    pool = await asyncpg.create_pool(pg.dsn(db), min_size=concurrency, max_size=concurrency)
    await pool.execute("CREATE TABLE baseline_apps (id uuid PRIMARY KEY, tenant_id uuid,"
                       " name text, mode text, created_at timestamptz DEFAULT now())")
    tenant = uuid.uuid4()

    async def write(i: int) -> None:
        async with pool.acquire() as conn:
            app_id = uuid.uuid4()
            await conn.execute("INSERT INTO baseline_apps (id, tenant_id, name, mode)"
                               " VALUES ($1, $2, $3, 'chat')", app_id, tenant, f"app {i}")
            await conn.fetchrow("SELECT * FROM baseline_apps WHERE id = $1", app_id)

    start = time.perf_counter()
    await _gather_bounded(concurrency, [lambda i=i: write(i) for i in range(n)])
    elapsed = time.perf_counter() - start
    await pool.close()
    return n / elapsed


async def main_async(n: int, concurrency: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="eddy-bench-"))
    pg = EmbeddedPostgres(root / "pg").start()
    redis = EmbeddedRedis(root / "redis").start()
    kafka = TansuBroker(log_path=root / "tansu.log").start()
    try:
        for name in ("baseline", "redis", "kafka"):
            pg.create_database(f"bench_{name}")
        print(f"{n} commands, concurrency {concurrency}", flush=True)
        baseline = await bench_baseline(pg, "bench_baseline", n, concurrency)
        print(f"baseline (sync INSERT+SELECT): {baseline:8.1f} writes/s", flush=True)
        for bus, bootstrap in (("redis", None), ("kafka", kafka.bootstrap_servers)):
            print(f"running {bus} …", flush=True)
            r = await bench_bus(_settings(pg, f"bench_{bus}", redis, bootstrap), n, concurrency)
            print(f"{bus:>6}: {r['commands_per_s']:8.1f} commands/s "
                  f"(x{r['commands_per_s'] / baseline:.3f} of baseline)  "
                  f"accepted→read model: median {r['median_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms",
                  flush=True)
    finally:
        kafka.stop()
        redis.stop()
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main_async(args.commands, args.concurrency))


if __name__ == "__main__":
    main()
