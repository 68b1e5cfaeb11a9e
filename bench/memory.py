"""A worker's memory under bulk indexing and chat bursts, and after them; Eddy's processes'
memory after many chat messages.

    .venv/bin/python -m bench.memory [--documents 12] [--paragraphs 60] [--bursts 3]
                                     [--rounds 2] [--messages 0] [--concurrency 16]

One run starts embedded Postgres and Valkey, the fake OpenAI-protocol provider, `eddy api`
and `eddy worker` (all roles) as processes. It samples the worker's RSS every second. Each
round indexes `--documents` documents with the local embedding model and answers
`--bursts` bursts of 100 concurrent chat messages, then waits 30 s of quiet. It prints the
idle RSS (the baseline, measured in the same run) and each round's peak and RSS after the
quiet, with their ratios to the baseline. The first round adds the embedding model (about
120 MB, loaded on first use); memory the worker takes for such work and never gives back
shows as later rounds ending higher than the first.

With `--messages N` it first sends N blocking chat messages (`--concurrency` closed-loop
users, each message a new conversation of one of 7 users) and prints the RSS of Eddy's
processes (`eddy api` and `eddy worker`, as `eddy up` runs them, with their children) after
start and after the messages and MESSAGES_QUIET_SECONDS of quiet: the growth is what a
long-running node keeps per message served (goal: < 50 MB after 10,000). Postgres' and
Valkey's RSS are printed beside it (they hold the data: shared buffers, task streams until
their TTL). Stops everything it started, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx
import psutil

from bench import procs
from bench.chat_node import ChatNode, chat_node

QUIET_SECONDS = 30
MESSAGES_QUIET_SECONDS = 10
GOAL_GROWTH_MB = 50.0


def _tree_mb(pid: int, size: Callable[[psutil.Process], int]) -> float:
    """A process's and its children's memory by `size`; a child that exits meanwhile (a
    Postgres backend of a closed connection) counts nothing."""
    total = 0
    process = psutil.Process(pid)
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += size(p)
    return total / 2**20


def rss_mb(pid: int) -> float:
    return _tree_mb(pid, lambda p: p.memory_info().rss)


def pss_mb(pid: int) -> float:
    """Proportional set size of a process and its children: Postgres' backends share its
    buffers, which RSS would count once per backend."""
    return _tree_mb(pid, lambda p: p.memory_full_info().pss)


def eddy_rss_mb(node: ChatNode) -> dict[str, float]:
    """RSS of Eddy's processes (with their children), then of the data servers (Postgres:
    PSS)."""
    postgres = procs.postmaster_pid(node.pg)
    return {"api": rss_mb(node.api.proc.pid), "worker": rss_mb(node.worker.pid),
            "postgres": pss_mb(postgres) if postgres else 0.0,
            "valkey": rss_mb(node.redis.pid)}


def _fmt_rss(rss: dict[str, float]) -> str:
    return "  ".join(f"{name} {mb:.0f}" for name, mb in rss.items()) + " MB"


async def messages_growth(node: ChatNode, messages: int, concurrency: int) -> bool:
    """RSS of Eddy's processes after start, and after `messages` blocking chat messages and
    a quiet spell; whether api + worker grew less than GOAL_GROWTH_MB."""
    after_start = eddy_rss_mb(node)
    print(f"after start: {_fmt_rss(after_start)}", flush=True)
    sent = 0
    began = time.perf_counter()

    async def user(c: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < messages:
            sent += 1
            i = sent
            r = await c.post("/v1/chat-messages", headers=node.app_key, json={
                "inputs": {}, "query": f"Hello {i}", "user": f"user{i % 7}",
                "response_mode": "blocking"})
            r.raise_for_status()
            if i % 1000 == 0:
                print(f"  {i} messages ({i / (time.perf_counter() - began):.1f}/s): "
                      f"{_fmt_rss(eddy_rss_mb(node))}", flush=True)

    async with httpx.AsyncClient(base_url=node.api.url, timeout=120) as c:
        await asyncio.gather(*(user(c) for _ in range(concurrency)))
    await asyncio.sleep(MESSAGES_QUIET_SECONDS)
    after = eddy_rss_mb(node)
    print(f"after {messages} messages and {MESSAGES_QUIET_SECONDS} s quiet: {_fmt_rss(after)}")
    grown = {name: after[name] - after_start[name] for name in after}
    eddy = grown["api"] + grown["worker"]
    met = eddy < GOAL_GROWTH_MB
    print(f"grown: {_fmt_rss(grown)}; Eddy's processes (api + worker) {eddy:+.1f} MB "
          f"(goal < {GOAL_GROWTH_MB:.0f} MB after 10,000): {'yes' if met else 'NO'}\n",
          flush=True)
    return met


async def main_async(documents: int, paragraphs: int, bursts: int, rounds: int,
                     messages: int, concurrency: int) -> None:
    async with chat_node("memory") as node:
        worker, api, auth, app_key = node.worker, node.api, node.auth, node.app_key
        if messages:
            await messages_growth(node, messages, concurrency)
        if not rounds:
            return
        samples: list[float] = []

        async def sample() -> None:
            while True:
                samples.append(rss_mb(worker.pid))
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample())
        async with httpx.AsyncClient(base_url=api.url, timeout=120) as c:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=12)
    parser.add_argument("--paragraphs", type=int, default=60)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="0: the messages' growth alone")
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main_async(args.documents, args.paragraphs, args.bursts, args.rounds,
                           args.messages, args.concurrency))


if __name__ == "__main__":
    main()
