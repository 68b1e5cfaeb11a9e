"""A worker's memory under bulk indexing and chat bursts, and after them.

    .venv/bin/python -m bench.memory [--documents 12] [--paragraphs 60] [--bursts 3]
                                     [--rounds 2]

One run starts embedded Postgres and Valkey, the fake OpenAI-protocol provider, `eddy api`
and `eddy worker` (all roles) as processes. It samples the worker's RSS every second. Each
round indexes `--documents` documents with the local embedding model and answers
`--bursts` bursts of 100 concurrent chat messages, then waits 30 s of quiet. It prints the
idle RSS (the baseline, measured in the same run) and each round's peak and RSS after the
quiet, with their ratios to the baseline. The first round adds the embedding model (about
120 MB, loaded on first use); memory the worker takes for such work and never gives back
shows as later rounds ending higher than the first. Stops everything it started, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from adapters.embedded.ports import LOOPBACK
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
from bench import procs
from bench.commands import _console_auth, _migrate, _settings, _start_server
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat

KEY, MODEL = "sk-bench-0123456789", "bench-model"
CHUNKS = [f"token{i} " for i in range(20)]
QUIET_SECONDS = 30


def rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


async def main_async(documents: int, paragraphs: int, bursts: int, rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="eddy-bench-memory-"))
    pg = EmbeddedPostgres(root / "pg").start()
    redis = EmbeddedRedis(root / "redis").start()
    provider = FakeOpenAIServer(api_key=KEY, models={MODEL}).start()
    provider.chat_responder = lambda body: ScriptedChat("".join(CHUNKS), chunks=CHUNKS,
                                                        chunk_delay=0.005)
    started: list[subprocess.Popen[bytes]] = []
    completed = False
    try:
        pg.create_database("bench_memory")
        settings = _settings(pg, "bench_memory", redis, None, root / "data")
        await _migrate(settings)
        env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
        worker_log = root / "worker.log"
        worker = procs.spawn(["-m", "cli", "worker", "--member", "bench-memory"], env,
                             worker_log)
        started.append(worker)
        api = await _start_server(
            "eddy api", lambda port: ["-m", "cli", "api"],
            lambda port: {**env, "DIFY_BIND_ADDRESS": LOOPBACK, "DIFY_PORT": str(port)},
            "/ready", root / "api.log",
            alive=lambda: procs.check_alive(worker, "eddy worker", worker_log))
        started.append(api.proc)
        auth = await _console_auth(api.url, lambda: None)
        samples: list[float] = []

        async def sample() -> None:
            while True:
                samples.append(rss_mb(worker.pid))
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample())
        async with httpx.AsyncClient(base_url=api.url, timeout=120) as c:
            (await c.post(
                "/console/api/workspaces/current/model-providers/openai_api_compatible/models",
                headers=auth, json={"model": MODEL, "model_type": "llm", "credentials": {
                    "api_key": KEY, "endpoint_url": provider.base_url, "mode": "chat",
                    "context_size": "8192"}})).raise_for_status()
            app = (await c.post("/console/api/apps", headers=auth,
                                json={"name": "Bench", "mode": "chat"})).json()
            app_key = {"Authorization": "Bearer " + (await c.post(
                f"/console/api/apps/{app['id']}/api-keys", headers=auth)).json()["token"]}
            dataset_key = {"Authorization": "Bearer " + (await c.post(
                "/console/api/datasets/api-keys", headers=auth)).json()["token"]}
            dataset = (await c.post("/v1/datasets", headers=dataset_key, json={
                "name": "bench", "indexing_technique": "high_quality"})).json()
            await asyncio.sleep(3)
            idle = samples[-1]
            paragraph = " ".join(f"word{i} about memory and the indexing of long documents"
                                 for i in range(40))
            text = "\n\n".join(f"{paragraph} {j}" for j in range(paragraphs))

            async def ask(i: int) -> int:
                r = await c.post("/v1/chat-messages", headers=app_key, json={
                    "inputs": {}, "query": f"Hello {i}", "user": f"user{i % 7}",
                    "response_mode": "streaming"})
                return r.status_code

            results: list[tuple[float, float]] = []  # (peak, after) per round
            for round_ in range(1, rounds + 1):
                first = len(samples)
                for d in range(documents):
                    (await c.post(f"/v1/datasets/{dataset['id']}/document/create-by-text",
                                  headers=dataset_key, json={
                                      "name": f"doc {round_}.{d}", "text": text,
                                      "indexing_technique": "high_quality",
                                      "process_rule": {"mode": "automatic"}})
                     ).raise_for_status()
                for _ in range(bursts):
                    codes = await asyncio.gather(*(ask(i) for i in range(100)))
                    assert codes.count(200) == 100, codes
                deadline = time.monotonic() + 900
                while time.monotonic() < deadline:
                    docs = (await c.get(f"/v1/datasets/{dataset['id']}/documents",
                                        headers=dataset_key, params={"limit": 100})
                            ).json()["data"]
                    if all(d["indexing_status"] in ("completed", "error") for d in docs):
                        break
                    await asyncio.sleep(2)
                completed_docs = sum(d["indexing_status"] == "completed" for d in docs)
                peak = max(samples[first:])
                await asyncio.sleep(QUIET_SECONDS)
                results.append((peak, samples[-1]))
                print(f"round {round_}: {completed_docs} documents indexed, {bursts} x 100 "
                      f"answers; worker peak {peak:.0f} MB, after {QUIET_SECONDS} s quiet "
                      f"{samples[-1]:.0f} MB", flush=True)
        sampler.cancel()
        print(f"\nworker RSS, idle (the baseline): {idle:.0f} MB")
        for round_, (peak, after) in enumerate(results, start=1):
            print(f"round {round_}: peak {peak:5.0f} MB ({peak / idle:4.2f}x), after quiet "
                  f"{after:5.0f} MB ({after / idle:4.2f}x)")
        completed = True
    finally:
        for proc in started:
            procs.stop(proc)
        provider.stop()
        redis.stop()
        pg.stop()
        procs.finish(root, completed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=12)
    parser.add_argument("--paragraphs", type=int, default=60)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main_async(args.documents, args.paragraphs, args.bursts, args.rounds))


if __name__ == "__main__":
    main()
