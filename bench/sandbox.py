"""Benchmark: what the code sandbox costs per run, against starting the same interpreter
bare (no cage, no limits, no user change) in the same run.

For each language (python3, javascript, jinja2) it runs a trivial program `--runs` times,
one at a time, through `BubblewrapSandbox.run` (the whole path a code node takes: JSON in,
prlimit, bwrap, setpriv, the runner, JSON out on its own pipe) and through a bare
interpreter subprocess, and prints p50, p90 and the fastest in ms, and the cage's share
(caged minus bare, at p50 and at the fastest: the least disturbed on a shared machine).
The first caged run builds the cage's root (ldd of the interpreter and its libraries) and
is not counted.

    python -m bench.sandbox [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from adapters.sandbox.base import CodeLanguage, SandboxLimits
from adapters.sandbox.bubblewrap import BubblewrapSandbox, node_binary

PROGRAMS: dict[CodeLanguage, str] = {
    "python3": "def main(x):\n    return {'y': x + 1}",
    "javascript": "function main({x}) { return {y: x + 1} }",
    "jinja2": "{{ x + 1 }}",
}
BARE: dict[CodeLanguage, list[str]] = {
    "python3": [sys.executable, "-I", "-S", "-c", "import json; json.dumps({'y': 2})"],
    "javascript": [node_binary() or "node", "-e", "JSON.stringify({y: 2})"],
    "jinja2": [sys.executable, "-c", "import jinja2.sandbox"],
}


async def _timed(runs: int, once: Callable[[], Awaitable[object]]) -> list[float]:
    await once()  # warm: the cage's root, the page cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await once()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def _bare(command: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(*command)
    await process.wait()


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1]


async def main(runs: int) -> None:
    sandbox = BubblewrapSandbox()
    limits = SandboxLimits()
    print(f"{'language':<11} {'caged p50':>9} {'p90':>7} {'min':>7} {'bare p50':>9} {'min':>7} "
          f"{'cage p50':>9} {'min':>7}  (ms)")
    for language, code in PROGRAMS.items():
        def caged(language: CodeLanguage = language, code: str = code) -> Awaitable[object]:
            return sandbox.run(language, code, {"x": 1}, limits)
        def bare(language: CodeLanguage = language) -> Awaitable[None]:
            return _bare(BARE[language])
        caged_times = await _timed(runs, caged)
        bare_times = await _timed(runs, bare)
        caged_p50, bare_p50 = statistics.median(caged_times), statistics.median(bare_times)
        caged_min, bare_min = min(caged_times), min(bare_times)
        print(f"{language:<11} {caged_p50:9.1f} {_p(caged_times, 90):7.1f} {caged_min:7.1f} "
              f"{bare_p50:9.1f} {bare_min:7.1f} {caged_p50 - bare_p50:9.1f} "
              f"{caged_min - bare_min:7.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
