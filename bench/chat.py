"""Time to first token added by Eddy, and blocking messages per second.

    .venv/bin/python -m bench.chat [--streams 1,50] [--rounds 3] [--messages 200]

One run starts embedded Postgres and Valkey, the fake OpenAI-protocol provider
(tests/fakes/openai_server.py, a real HTTP server streaming 20 chunks, one every 5 ms),
`eddy api` and `eddy worker` (all roles, chat included) as processes, and the baseline
(bench/chat_proxy.py: a bare FastAPI streaming proxy, in its own uvicorn process). For each
concurrency (closed loop: each virtual user sends its next message when the previous one
ended), it measures time to first token (TTFT) three ways, in alternating rounds:

- provider: streaming from the provider directly (what a client would get without us);
- baseline: through the bare proxy;
- eddy: `POST /v1/chat-messages` streaming (command, chat processor, task stream, SSE).

and prints p50 / p99 of each, and what Eddy and the proxy add over the provider at that
concurrency (target: Eddy's p99 added ≤ 100 ms at 50 streams), with the CPU milliseconds
each way's servers spent per message (on a shared, busy machine wall time mixes our cost
with everyone else's; CPU time does not). The provider and the load generator run in this
script ("bench"). Target: Eddy's servers (api, worker, Postgres, Redis) ≤ 12 ms CPU per
message at 50 streams. Then blocking messages/s through the proxy and through Eddy with the
same fast model, and their ratio (target ≥ 0.5). Stops
everything it started, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence

import httpx

from adapters.embedded.ports import LOOPBACK
from bench import procs
from bench.chat_node import KEY, MODEL, chat_node
from bench.commands import _percentile, _start_server

TARGET_ADDED_P99_MS = 100.0
TARGET_CPU_MS = 12.0  # all of Eddy's server processes, per message, at 50 streams
TARGET_BLOCKING_RATIO = 0.5


async def first_token(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                      body: dict[str, object], marker: bytes) -> float:
    """Seconds from sending until the first line containing `marker` (then read to the end)."""
    started = time.perf_counter()
    ttft = None
    async with client.stream("POST", url, headers=headers, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if ttft is None and marker.decode() in line:
                ttft = time.perf_counter() - started
    assert ttft is not None, f"{url}: no token"
    return ttft


async def closed_loop(users: int, per_user: int,
                      one: Callable[[httpx.AsyncClient], Awaitable[float]]) -> list[float]:
    async def user() -> list[float]:
        async with httpx.AsyncClient(timeout=120) as client:
            return [await one(client) for _ in range(per_user)]

    return [t for ts in await asyncio.gather(*(user() for _ in range(users))) for t in ts]


def fmt(values: Sequence[float]) -> str:
    return (f"p50 {_percentile(sorted(values), 0.5) * 1000:7.1f} ms  "
            f"p99 {_percentile(sorted(values), 0.99) * 1000:7.1f} ms")


async def main_async(streams: Sequence[int], rounds: int, messages: int) -> bool:
    async with chat_node("chat") as node:
        api, worker, provider, key = node.api, node.worker, node.provider, node.app_key
        proxy = await _start_server(
            "baseline", lambda port: ["-m", "uvicorn", "bench.chat_proxy:app", "--host",
                                      LOOPBACK, "--port", str(port), "--log-level", "warning",
                                      "--no-access-log"],
            lambda port: {**os.environ, "BENCH_PROVIDER_URL": provider.base_url,
                          "BENCH_PROVIDER_KEY": KEY, "BENCH_MODEL": MODEL},
            "/health", node.root / "proxy.log")
        ask = {"inputs": {}, "query": "Hello", "user": "bench", "response_mode": "streaming"}
        direct = {"model": MODEL, "stream": True,
                  "messages": [{"role": "user", "content": "Hello"}]}
        ways: dict[str, Callable[[httpx.AsyncClient], Awaitable[float]]] = {
            "provider": lambda cl: first_token(cl, f"{provider.base_url}/chat/completions",
                                               {"Authorization": f"Bearer {KEY}"}, direct,
                                               b'"content": "token'),
            "baseline": lambda cl: first_token(cl, f"{proxy.url}/v1/chat-messages", {}, ask,
                                               b'"event":"message"'),
            "eddy": lambda cl: first_token(cl, f"{api.url}/v1/chat-messages", key, ask,
                                           b'"event":"message"'),
        }
        postgres = procs.postmaster_pid(node.pg)
        cpu_probes: dict[str, procs.CpuProbes] = {
            "provider": {"bench": procs.this_process},
            "baseline": {"proxy": lambda: procs.tree_cpu(proxy.proc.pid),
                         "bench": procs.this_process},
            "eddy": {"api": lambda: procs.tree_cpu(api.proc.pid),
                     "worker": lambda: procs.tree_cpu(worker.pid),
                     "postgres": lambda: procs.tree_cpu(postgres),
                     "redis": lambda: procs.tree_cpu(node.redis.pid), "bench": procs.this_process},
        }
        await closed_loop(4, 5, ways["eddy"])  # warm up
        verdict = True
        for users in streams:
            per_user = max(2, 100 // users)
            ttft: dict[str, list[float]] = {name: [] for name in ways}
            cpu: dict[str, dict[str, float]] = {name: {} for name in ways}
            for r in range(rounds):
                for name, one in ways.items():
                    meter = procs.CpuMeter(cpu_probes[name])
                    ttft[name] += await closed_loop(users, per_user, one)
                    for part, seconds in meter.used().items():
                        cpu[name][part] = cpu[name].get(part, 0.0) + seconds
                print(f"{users} streams, round {r + 1}: " + "  ".join(
                    f"{n} {_percentile(sorted(t), 0.5) * 1000:.1f} ms" for n, t in ttft.items()),
                    flush=True)
            base = {q: _percentile(sorted(ttft["provider"]), q) for q in (0.5, 0.99)}
            print(f"\n== {users} concurrent streams ({len(ttft['eddy'])} messages each) ==")
            for name, values in ttft.items():
                added = "" if name == "provider" else "   added: " + "  ".join(
                    f"p{int(q * 100)} {(_percentile(sorted(values), q) - base[q]) * 1000:.1f}"
                    " ms" for q in (0.5, 0.99))
                print(f"  {name:9s} TTFT {fmt(values)}{added}")
            for name, used in cpu.items():
                per_message = procs.format_cpu(used, len(ttft[name]), "ms")
                print(f"  {name:9s} CPU per message: {per_message}")
            if users >= 50:
                added_p99 = (_percentile(sorted(ttft["eddy"]), 0.99) - base[0.99]) * 1000
                met = added_p99 <= TARGET_ADDED_P99_MS
                verdict &= met
                print(f"  target: Eddy's p99 added ≤ {TARGET_ADDED_P99_MS:.0f} ms at 50 streams:"
                      f" {'yes' if met else 'NO'} ({added_p99:.1f} ms)")
                servers_ms = sum(seconds for part, seconds in cpu["eddy"].items()
                                 if part != "bench") / len(ttft["eddy"]) * 1000
                met = servers_ms <= TARGET_CPU_MS
                verdict &= met
                print(f"  target: Eddy's servers' CPU ≤ {TARGET_CPU_MS:.0f} ms per message:"
                      f" {'yes' if met else 'NO'} ({servers_ms:.1f} ms)")
        blocking = {**ask, "response_mode": "blocking"}
        blocking_users, blocking_each = 16, max(1, messages // 16)
        rate: dict[str, float] = {}
        for name, url, headers in (("baseline", proxy.url, {}), ("eddy", api.url, key)):
            async def one_blocking(cl: httpx.AsyncClient, url: str = url,
                                   headers: dict[str, str] = headers) -> float:
                r = await cl.post(f"{url}/v1/chat-messages", headers=headers, json=blocking)
                r.raise_for_status()
                assert r.json()["answer"], f"{url}: empty answer"
                return 0.0

            started = time.perf_counter()
            await closed_loop(blocking_users, blocking_each, one_blocking)
            rate[name] = blocking_users * blocking_each / (time.perf_counter() - started)
            print(f"\nblocking {name}: {rate[name]:.1f} messages/s ({blocking_users} users, "
                  "fake model streaming 20 chunks 5 ms apart)")
        ratio = rate["eddy"] / rate["baseline"]
        met = ratio >= TARGET_BLOCKING_RATIO
        verdict &= met
        print(f"  target: Eddy ÷ bare proxy, blocking messages/s ≥ {TARGET_BLOCKING_RATIO}: "
              f"{'yes' if met else 'NO'} ({ratio:.2f})")
        print(f"all targets met: {'yes' if verdict else 'NO'}")
        return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main_async([int(s) for s in args.streams.split(",")], args.rounds,
                           args.messages))


if __name__ == "__main__":
    main()
