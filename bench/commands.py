"""Benchmark of Eddy's command path, on each bus (Redis Streams, Kafka on the embedded tansu
broker), against a baseline measured in the same run on the same Postgres.

1. create-app requests/s over HTTP: `eddy api` (uvicorn, its own process; the worker roles
   in another, as deployed) against `bench.baseline_app` (bare FastAPI + asyncpg: INSERT the
   app, SELECT it back, as Dify's synchronous CRUD does; uvicorn, its own process), both
   driven over TCP by the same closed-loop httpx load generator, in alternating rounds.
2. accepted → read model per command at that concurrency: publish CreateApp, wait for its
   outcome, then for the projection of the aggregates it wrote.
3. relay events/s into the bus: N events appended to a fresh event store, then the relay
   run from position 0 until its position reaches the end.
4. projection catch-up events/s: the projection processors run from zero on those topics
   until `measure_lag` says 0.

    python -m bench.commands [--requests 1000] [--concurrency 16] [--rounds 3]
                             [--commands 500] [--events 20000] [--bus redis,kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from adapters.embedded.ports import LOOPBACK, free_port
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.tansu import TansuBroker
from adapters.embedded.valkey import EmbeddedRedis
from bench.baseline_app import DSN_ENV, POOL_ENV
from bootstrap import Container, build
from commands.platform.aggregates import App
from config import Settings, load_settings
from events.envelope import Envelope
from events.relay import Relay
from gateway.commanding import CommandGateway
from migrations.runner import upgrade
from projections.platform import queries
from projections.progress import measure_lag
from schemas.base import CommandEnvelope
from schemas.platform.commands import CreateApp
from schemas.platform.events import AppCreated
from schemas.topics import COMMANDS
from workers.processors import projection_processor
from workers.runtime import RetryPolicy, run_processor

ROOT = Path(__file__).resolve().parent.parent
BUSES = ("redis", "kafka")
EMAIL, PASSWORD = "bench@example.com", "passw0rd1"

# Targets (ARCHITECTURE.md): what each measure is held to.
TARGET_HTTP_RATIO = 0.5  # Eddy's create-app requests/s ÷ the baseline's
TARGET_READ_MODEL_P99_MS = {"redis": 25.0, "kafka": 60.0}
TARGET_RELAY_PER_S = 20_000.0
TARGET_CATCH_UP_PER_S = 5_000.0

REQUEST_TIMEOUT = 60.0  # one HTTP request
STARTUP_TIMEOUT = 120.0  # a server answering its readiness probe; the console set up
APPEND_BATCH = 500  # events per event-store append when filling the log
LAG_POLL_INTERVAL = 0.1


# --- child processes: started here, stopped here, by PID ------------------------------------

_children: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A Python child in its own session (Ctrl-C reaches only this script, which stops it
    and whatever it started by process group), its output in `log_path`."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _children[proc.pid] = proc
    return proc


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (graceful: uvicorn drains, workers leave their groups), then SIGKILL to
    whatever is left of the child's process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its session's group: pgid == its pid
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    _children.pop(proc.pid, None)


@atexit.register
def _stop_children() -> None:
    for proc in list(_children.values()):
        _stop(proc, timeout=5)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class Server:
    """An HTTP server this script started: uvicorn in a child process on a loopback port."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                               f"log {self.log}:\n{_tail(self.log)}")

    def stop(self) -> None:
        _stop(self.proc)


def _check_alive(proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited with {proc.returncode}; log {log}:\n{_tail(log)}")


async def _start_server(name: str, args: Callable[[int], list[str]],
                        env: Callable[[int], dict[str, str]], ready_path: str, log: Path,
                        alive: Callable[[], None] = lambda: None) -> Server:
    """Start a server on a free loopback port and wait until `ready_path` answers 200.
    A port taken between choosing and binding it costs a retry on another one."""
    for attempt in range(3):
        port = free_port()
        proc = _spawn(args(port), env(port), log)
        url = f"http://{LOOPBACK}:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                while True:
                    if proc.poll() is not None:
                        if "address already in use" in _tail(log).lower() and attempt < 2:
                            break
                        _check_alive(proc, name, log)
                    alive()
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(ready_path)).status_code == 200:
                            return Server(name, proc, url, log)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name}: {ready_path} not ready after "
                                           f"{STARTUP_TIMEOUT:.0f} s; log {log}:\n{_tail(log)}")
                    await asyncio.sleep(0.1)
        except BaseException:
            _stop(proc)
            raise
        _stop(proc)
    raise RuntimeError(f"{name}: no free port after 3 attempts")


# --- the load generator: the same for Eddy and the baseline ---------------------------------


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of all values at or below it."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


@dataclass(frozen=True)
class Load:
    """One closed-loop run: `concurrency` clients, each sending its next request as soon
    as the previous one answered, until `requests` were sent."""

    requests: int
    elapsed: float
    latencies: tuple[float, ...]  # seconds, of the requests answered as expected
    errors: int
    first_error: str | None

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.elapsed


def _http_client(url: str, concurrency: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, timeout=REQUEST_TIMEOUT,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))


async def drive(client: httpx.AsyncClient, path: str, headers: dict[str, str], requests: int,
                concurrency: int, body: Callable[[int], dict[str, Any]],
                expect: int = 201) -> Load:
    pending = iter(range(requests))  # shared by the clients: each takes the next number
    latencies: list[float] = []
    errors: list[str] = []

    async def one_client() -> None:
        for i in pending:
            sent = time.perf_counter()
            try:
                response = await client.post(path, json=body(i), headers=headers)
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
                continue
            took = time.perf_counter() - sent
            if response.status_code == expect:
                latencies.append(took)
            else:
                errors.append(f"{response.status_code} {response.text[:300]}")

    start = time.perf_counter()
    async with asyncio.timeout(REQUEST_TIMEOUT + requests * 1.0), asyncio.TaskGroup() as g:
        for _ in range(concurrency):
            g.create_task(one_client())
    elapsed = time.perf_counter() - start
    return Load(requests, elapsed, tuple(sorted(latencies)), len(errors),
                errors[0] if errors else None)


def _create_body(i: int) -> dict[str, Any]:
    return {"name": f"bench app {i}", "mode": "chat"}


@dataclass(frozen=True)
class HttpComparison:
    """Alternating rounds (baseline, Eddy, baseline, Eddy, ...): each ratio compares runs
    adjacent in time, so a neighbour's load on the machine hits both about alike."""

    eddy: tuple[Load, ...]
    baseline: tuple[Load, ...]

    def runs(self, side: str) -> tuple[Load, ...]:
        return self.eddy if side == "eddy" else self.baseline

    def per_s(self, side: str) -> float:
        return statistics.median(r.per_s for r in self.runs(side))

    def latency_ms(self, side: str, q: float) -> float:
        pooled = sorted(t for run in self.runs(side) for t in run.latencies)
        return _percentile(pooled, q) * 1000

    def errors(self, side: str) -> int:
        return sum(r.errors for r in self.runs(side))

    @property
    def ratio(self) -> float:
        return statistics.median(e.per_s / b.per_s for e, b in zip(self.eddy, self.baseline,
                                                                    strict=True))


def _fmt_load(load: Load) -> str:
    latencies = load.latencies
    text = (f"{load.per_s:8.1f} req/s  p50 {_percentile(latencies, 0.5) * 1000:6.1f} ms"
            f"  p99 {_percentile(latencies, 0.99) * 1000:6.1f} ms")
    if load.errors:
        text += f"  {load.errors} errors (first: {load.first_error})"
    return text


async def compare_http(eddy: httpx.AsyncClient, eddy_headers: dict[str, str],
                       baseline: httpx.AsyncClient, requests: int, concurrency: int,
                       rounds: int, warmup: int) -> HttpComparison:
    path = "/console/api/apps"
    for client, headers in ((baseline, {}), (eddy, eddy_headers)):
        warm = await drive(client, path, headers, warmup, concurrency, _create_body)
        if warm.errors:
            raise RuntimeError(f"warm-up of {client.base_url} failed: {warm.first_error}")
    eddy_runs: list[Load] = []
    baseline_runs: list[Load] = []
    for n in range(1, rounds + 1):
        b = await drive(baseline, path, {}, requests, concurrency, _create_body)
        e = await drive(eddy, path, eddy_headers, requests, concurrency, _create_body)
        print(f"  round {n}: baseline {_fmt_load(b)}\n"
              f"           eddy     {_fmt_load(e)}   (x{e.per_s / b.per_s:.2f})", flush=True)
        baseline_runs.append(b)
        eddy_runs.append(e)
    return HttpComparison(tuple(eddy_runs), tuple(baseline_runs))


# --- Eddy: servers, console login, accepted → read model ------------------------------------


def _settings(pg: EmbeddedPostgres, db: str, redis: EmbeddedRedis, kafka: str | None,
              data_dir: Path) -> Settings:
    return load_settings(
        DB_HOST=pg.host, DB_PORT=pg.port, DB_USERNAME=pg.user, DB_PASSWORD="", DB_DATABASE=db,
        REDIS_HOST=redis.host, REDIS_PORT=redis.port,
        SECRET_KEY="bench-secret-key-0123456789-abcdef",
        EVENT_BUS="kafka" if kafka else "redis", KAFKA_BOOTSTRAP_SERVERS=kafka or "",
        EVENT_TOPIC_PREFIX=f"b{uuid.uuid4().hex[:6]}.", LOG_LEVEL="WARNING",
        COMMAND_TIMEOUT_SECONDS=60, PROJECTION_WAIT_SECONDS=60, MIGRATION_ENABLED=False,
        EDDY_DATA_DIR=str(data_dir),
    )


async def _migrate(settings: Settings) -> None:
    await asyncio.to_thread(
        upgrade, settings.database_dsn().replace("postgresql://", "postgresql+psycopg://", 1))


async def _console_auth(client: httpx.AsyncClient, alive: Callable[[], None]) -> dict[str, str]:
    """Set the console up (a command: proves the worker handles commands and projects) and
    log in; returns the Authorization header."""
    setup = await client.post("/console/api/setup", json={
        "email": EMAIL, "name": "Bench", "password": PASSWORD}, timeout=STARTUP_TIMEOUT)
    if setup.status_code not in (201, 202):
        raise RuntimeError(f"setup: {setup.status_code} {setup.text[:500]}")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while (await client.get("/console/api/setup")).json().get("step") != "finished":
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError("console setup not projected in time")
        await asyncio.sleep(0.2)
    login = await client.post("/console/api/login", json={"email": EMAIL, "password": PASSWORD})
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['data']['access_token']}"}


async def accepted_to_read_model(settings: Settings, commands: int,
                                 concurrency: int) -> list[float]:
    """Seconds from a command's outcome (accepted) to the read model showing the
    aggregates it wrote, per command, `concurrency` commands in flight."""
    container = await build(settings, listen=True)
    try:
        gateway = CommandGateway(container)
        account = await queries.account_by_email(container.engine, EMAIL)
        assert account is not None
        tenant = await queries.current_workspace_of(container.engine, account["id"])
        pending = iter(range(commands))
        latencies: list[float] = []

        async def one_client() -> None:
            for i in pending:
                app_id = uuid.uuid4()
                command = CommandEnvelope.of(
                    CreateApp(app_id=app_id, name=f"latency {i}", mode="chat"),
                    aggregate_id=app_id, tenant_id=tenant, actor_id=account["id"],
                    correlation_id=uuid.uuid4())
                await container.bus.publish(COMMANDS, str(app_id), command.to_json(), {
                    "command_type": command.type, "correlation_id": str(command.correlation_id)})
                outcome = await gateway.wait_outcome(command.command_id, REQUEST_TIMEOUT)
                accepted = time.perf_counter()
                if outcome is None or outcome.status != "accepted":
                    raise RuntimeError(f"command {command.command_id}: {outcome}")
                if not await gateway.wait_for_projection(outcome, REQUEST_TIMEOUT):
                    raise TimeoutError(f"command {command.command_id} not projected")
                latencies.append(time.perf_counter() - accepted)

        async with asyncio.timeout(REQUEST_TIMEOUT + commands * 1.0), asyncio.TaskGroup() as g:
            for _ in range(concurrency):
                g.create_task(one_client())  # one failing cancels the others
        return sorted(latencies)
    finally:
        await container.close()


# --- relay and projection catch-up on a log filled directly ---------------------------------


@dataclass(frozen=True)
class Throughput:
    events: int
    elapsed: float
    note: str = ""

    @property
    def per_s(self) -> float:
        return self.events / self.elapsed


async def _fill_event_store(c: Container, events: int) -> int:
    """`events` AppCreated events (one new app each, one workspace) appended in batches, as
    the command executor stores them; returns the log's last position."""
    tenant, actor = uuid.uuid4(), uuid.uuid4()
    last = 0
    for start in range(0, events, APPEND_BATCH):
        batch = [Envelope.new(
            AppCreated(name=f"replay app {i}", mode="chat", created_by=actor),
            aggregate_type=App.type_name, aggregate_id=uuid.uuid4(), aggregate_version=1,
            tenant_id=tenant, correlation_id=uuid.uuid4(), causation_id=uuid.uuid4(),
        ) for i in range(start, min(events, start + APPEND_BATCH))]
        last = await asyncio.to_thread(c.store.append, batch)
    return last


async def _stop_tasks(stop: asyncio.Event, tasks: Sequence[asyncio.Task[None]]) -> None:
    stop.set()
    if tasks:
        _, still = await asyncio.wait(tasks, timeout=15)
        for task in still:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _raise_if_crashed(tasks: Sequence[asyncio.Task[None]], what: str) -> None:
    for task in tasks:
        if task.done():
            exc = task.exception()
            raise RuntimeError(f"{what} stopped early") from exc


async def relay_into_bus(c: Container, end: int, events: int, timeout: float) -> Throughput:
    """The relay from position 0: seconds until its recorded position reaches `end`."""
    relay = Relay(c.store, c.bus, c.routing, c.settings.database_dsn())
    conn = await asyncpg.connect(c.settings.database_dsn())
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(relay.run(stop), name="bench-relay")
    try:
        while True:
            position = await conn.fetchval(
                "SELECT position FROM relay_positions WHERE name = $1", relay.name) or 0
            now = time.perf_counter()
            if position >= end:
                return Throughput(events, now - start)
            _raise_if_crashed([task], "the relay")
            if now - start > timeout:
                raise TimeoutError(f"relay at position {position} of {end} after {timeout:.0f} s")
            await asyncio.sleep(0.005)
    finally:
        await _stop_tasks(stop, [task])
        await conn.close()


async def projection_catch_up(c: Container, timeout: float) -> Throughput:
    """Every projection processor from zero (new consumer groups, empty tracking) on topics
    the relay filled: seconds until `measure_lag` reports nothing pending."""
    projections = list(c.projections.values())

    async def lag() -> int:
        return sum([await measure_lag(c.engine, p.name, list(p.aggregate_types))
                    for p in projections])

    pending = await lag()
    if pending == 0:
        raise RuntimeError("nothing to project")
    stop = asyncio.Event()
    policy = RetryPolicy(max_attempts=c.settings.CONSUMER_MAX_ATTEMPTS)
    start = time.perf_counter()
    # What a worker's `projections` role runs (workers/node.py), in this process.
    tasks = [asyncio.create_task(run_processor(
        c.bus, projection_processor(c, p), "bench-catch-up", stop, policy,
        concurrency=c.settings.CONSUMER_CONCURRENCY), name=f"bench-{p.name}")
        for p in projections]
    first: float | None = None
    try:
        while True:
            left = await lag()
            now = time.perf_counter()
            if first is None and left < pending:
                first = now - start
            if left == 0:
                note = f"first events projected after {first:.2f} s" if first is not None else ""
                return Throughput(pending, now - start, note)
            _raise_if_crashed(tasks, "a projection processor")
            if now - start > timeout:
                raise TimeoutError(f"projection lag {left} of {pending} after {timeout:.0f} s")
            await asyncio.sleep(LAG_POLL_INTERVAL)
    finally:
        await _stop_tasks(stop, tasks)


async def replay(settings: Settings, events: int) -> tuple[Throughput, Throughput]:
    await _migrate(settings)
    c = await build(settings)
    try:
        appending = time.perf_counter()
        end = await _fill_event_store(c, events)
        took = time.perf_counter() - appending
        print(f"  appended {events} events in {took:.1f} s; relaying …", flush=True)
        timeout = max(120.0, events / 100)
        relayed = await relay_into_bus(c, end, events, timeout)
        print(f"  relay: {relayed.per_s:,.0f} events/s; projecting from zero …", flush=True)
        projected = await projection_catch_up(c, timeout)
        print(f"  catch-up: {projected.per_s:,.0f} events/s ({projected.note})", flush=True)
        return relayed, projected
    finally:
        await c.close()


# --- one bus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BusResult:
    bus: str
    http: HttpComparison
    read_model: tuple[float, ...]  # seconds, sorted
    relay: Throughput
    catch_up: Throughput


@dataclass(frozen=True)
class Options:
    requests: int
    concurrency: int
    rounds: int
    warmup: int
    commands: int
    events: int


async def bench_bus(bus: str, settings: Settings, replay_settings: Settings,
                    baseline_url: str, root: Path, opts: Options) -> BusResult:
    await _migrate(settings)
    worker_log, api_log = root / f"{bus}-worker.log", root / f"{bus}-api.log"
    env = settings.as_env(LOG_LEVEL="WARNING")
    # The worker roles in their own process, as deployed: all of them, as `eddy worker`.
    worker = _spawn(["-m", "cli", "worker", "--member", "bench-worker"],
                    {**os.environ, **env}, worker_log)
    try:
        def worker_alive() -> None:
            _check_alive(worker, "eddy worker", worker_log)

        api = await _start_server(
            "eddy api", lambda port: ["-m", "cli", "api"],
            lambda port: {**os.environ, **env, "DIFY_BIND_ADDRESS": LOOPBACK,
                          "DIFY_PORT": str(port)},
            "/ready", api_log, alive=worker_alive)
        try:
            def alive() -> None:
                worker_alive()
                api.check_alive()

            async with _http_client(api.url, opts.concurrency) as eddy, \
                    _http_client(baseline_url, opts.concurrency) as baseline:
                headers = await _console_auth(eddy, alive)
                print(f"  eddy api {api.url} (pid {api.proc.pid}), worker pid {worker.pid}, "
                      f"baseline {baseline_url}", flush=True)
                http = await compare_http(eddy, headers, baseline, opts.requests,
                                          opts.concurrency, opts.rounds, opts.warmup)
            alive()
            read_model = await accepted_to_read_model(settings, opts.commands, opts.concurrency)
            print(f"  accepted → read model: p50 {_percentile(read_model, 0.5) * 1000:.1f} ms"
                  f"  p99 {_percentile(read_model, 0.99) * 1000:.1f} ms", flush=True)
            alive()
        finally:
            api.stop()
    finally:
        _stop(worker)
    # On a fresh database and topics, with no worker running: the relay and the projection
    # processors alone, in this process.
    relay, catch_up = await replay(replay_settings, opts.events)
    return BusResult(bus, http, tuple(read_model), relay, catch_up)


# --- report ----------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(results: dict[str, BusResult | BaseException], opts: Options) -> bool:
    """The results table; True when every target was reached."""
    rows: list[tuple[str, str, str, str, str]] = []
    all_met = True
    for bus, result in results.items():
        if isinstance(result, BaseException):
            rows.append((bus, "(failed)", f"{type(result).__name__}: {result}"[:60], "", "NO"))
            all_met = False
            continue
        h = result.http
        for side, label in (("eddy", "create-app HTTP, Eddy"),
                            ("baseline", "create-app HTTP, baseline")):
            errors = h.errors(side)
            rows.append((bus, label,
                         f"{h.per_s(side):,.1f} req/s  p50 {h.latency_ms(side, 0.5):.1f} ms"
                         f"  p99 {h.latency_ms(side, 0.99):.1f} ms"
                         + (f"  {errors} errors" if errors else ""), "", ""))
        ratio_ok = h.ratio >= TARGET_HTTP_RATIO and not h.errors("eddy")
        rows.append((bus, "Eddy ÷ baseline (req/s)", f"{h.ratio:.2f}x",
                     f"≥ {TARGET_HTTP_RATIO:.2f}x", _met(ratio_ok)))
        p99 = _percentile(result.read_model, 0.99) * 1000
        target = TARGET_READ_MODEL_P99_MS[bus]
        rows.append((bus, "accepted → read model",
                     f"p50 {_percentile(result.read_model, 0.5) * 1000:.1f} ms  p99 {p99:.1f} ms",
                     f"p99 ≤ {target:.0f} ms", _met(p99 <= target)))
        rows.append((bus, "relay into the bus",
                     f"{result.relay.per_s:,.0f} events/s ({result.relay.elapsed:.2f} s)",
                     f"≥ {TARGET_RELAY_PER_S:,.0f}/s",
                     _met(result.relay.per_s >= TARGET_RELAY_PER_S)))
        rows.append((bus, "projection catch-up",
                     f"{result.catch_up.per_s:,.0f} events/s ({result.catch_up.elapsed:.2f} s)",
                     f"≥ {TARGET_CATCH_UP_PER_S:,.0f}/s",
                     _met(result.catch_up.per_s >= TARGET_CATCH_UP_PER_S)))
        all_met &= ratio_ok and p99 <= target and result.relay.per_s >= TARGET_RELAY_PER_S \
            and result.catch_up.per_s >= TARGET_CATCH_UP_PER_S
    header = ("bus", "measure", "result", "target", "reached")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    print(f"\nResults: HTTP {opts.rounds} rounds x {opts.requests} requests per side at "
          f"concurrency {opts.concurrency} (req/s: median round; latency: all rounds), "
          f"{opts.commands} commands for accepted → read model, {opts.events} events "
          "relayed and projected")
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    print(f"all targets reached: {_met(all_met)}; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return all_met


# --- main ------------------------------------------------------------------------------------


async def main_async(opts: Options, buses: Sequence[str]) -> bool:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    root = Path(tempfile.mkdtemp(prefix="eddy-bench-"))
    print(f"work dir {root}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
          flush=True)
    pg = EmbeddedPostgres(root / "pg").start()
    redis: EmbeddedRedis | None = None
    kafka: TansuBroker | None = None
    baseline: Server | None = None
    ok = False
    try:
        redis = EmbeddedRedis(root / "redis").start()
        if "kafka" in buses:
            kafka = TansuBroker(log_path=root / "tansu.log").start()
        pg.create_database("bench_baseline")
        baseline_env = {**os.environ, DSN_ENV: pg.dsn("bench_baseline"),
                        POOL_ENV: str(opts.concurrency)}
        baseline = await _start_server(
            "baseline", lambda port: ["-m", "uvicorn", "bench.baseline_app:app", "--host",
                                      LOOPBACK, "--port", str(port), "--log-level", "warning",
                                      "--no-access-log"],
            lambda port: baseline_env, "/health", root / "baseline.log")
        results: dict[str, BusResult | BaseException] = {}
        for bus in buses:
            print(f"{bus}: …", flush=True)
            servers = kafka.bootstrap_servers if bus == "kafka" and kafka else None
            for db in (f"bench_{bus}", f"bench_{bus}_replay"):
                pg.create_database(db)
            try:
                results[bus] = await bench_bus(
                    bus, _settings(pg, f"bench_{bus}", redis, servers, root / bus),
                    _settings(pg, f"bench_{bus}_replay", redis, servers, root / bus),
                    baseline.url, root, opts)
            except Exception as exc:  # the other bus still runs; the table shows the failure
                print(f"  {bus} failed: {exc!r}", flush=True)
                results[bus] = exc
        report(results, opts)
        # Targets missed are results; a bus that could not be measured is a failure.
        ok = not any(isinstance(r, BaseException) for r in results.values())
        return ok
    finally:
        if baseline is not None:
            baseline.stop()
        _stop_children()
        if kafka is not None:
            kafka.stop()
        if redis is not None:
            redis.stop()
        pg.stop()
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs kept in {root}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000,
                        help="HTTP create-app requests per round and side (default 1000)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="requests (and commands) in flight (default 16)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating baseline/Eddy HTTP rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="unmeasured requests per side first (default 100)")
    parser.add_argument("--commands", type=int, default=500,
                        help="commands timed from accepted to read model (default 500)")
    parser.add_argument("--events", type=int, default=20_000,
                        help="events appended, relayed and projected (default 20000)")
    parser.add_argument("--bus", default=",".join(BUSES),
                        help="comma-separated buses to run (default redis,kafka)")
    args = parser.parse_args()
    buses = [b.strip() for b in args.bus.split(",") if b.strip()]
    if not buses or any(b not in BUSES for b in buses):
        parser.error(f"--bus: choose from {', '.join(BUSES)}")
    for name in ("requests", "concurrency", "rounds", "commands", "events"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    opts = Options(args.requests, args.concurrency, args.rounds, args.warmup, args.commands,
                   args.events)
    try:
        completed = asyncio.run(main_async(opts, buses))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything this run started is stopped", file=sys.stderr)
        sys.exit(130)
    sys.exit(0 if completed else 1)


if __name__ == "__main__":
    main()
