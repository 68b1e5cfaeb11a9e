"""Benchmark of Eddy's command path on each bus (Redis Streams; Kafka on the embedded tansu
broker) against a baseline measured in the same run, on the same Postgres.

1. create-app requests/s over HTTP: `eddy api` (uvicorn in its own process; the worker
   roles in another, as deployed) against `bench.baseline_app` (bare FastAPI + asyncpg:
   INSERT the app, SELECT it back, as Dify's synchronous CRUD does; uvicorn in its own
   process), both driven over loopback TCP by the same httpx load generator, in alternating
   rounds. Requests/s, p50/p99 latency, Eddy ÷ baseline, CPU per request per process.
2. accepted → read model, per command, at that concurrency: publish CreateApp, wait for
   its outcome, then for the projection of the aggregates it wrote.
3. relay events/s into the bus: N AppCreated events appended to a fresh event store, then
   the relay run from position 0 until its recorded position reaches the end.
4. projection catch-up events/s: the projection processors run from zero (new consumer
   groups) on the topics the relay filled, until `measure_lag` reports 0.

    python -m bench.commands [--requests 1000] [--concurrency 16] [--rounds 3] [--warmup 100]
                             [--commands 500] [--events 20000] [--bus redis,kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from adapters.embedded.ports import LOOPBACK, free_port
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.tansu import TansuBroker
from adapters.embedded.valkey import EmbeddedRedis
from bench import procs
from bench.baseline_app import DSN_ENV, POOL_ENV
from bootstrap import Container, build
from commands.platform.aggregates import App
from config import Settings, load_settings
from events.envelope import Envelope
from events.relay import Relay
from gateway.commanding import CommandGateway
from migrations.runner import migrate
from projections.platform import queries
from projections.versions import maintained_lags
from schemas.base import CommandEnvelope
from schemas.platform.commands import CreateApp
from schemas.platform.events import AppCreated
from schemas.topics import COMMANDS
from workers.processors import projection_processor
from workers.runtime import HANDLED, RetryPolicy, run_processor

BUSES = ("redis", "kafka")
EMAIL, PASSWORD = "bench@example.com", "passw0rd1"
CREATE_APP = "/console/api/apps"

# The targets each measure is held to.
TARGET_HTTP_RATIO = 0.6  # Eddy's create-app requests/s ÷ the baseline's
TARGET_READ_MODEL_P99_MS = {"redis": 25.0, "kafka": 60.0}
TARGET_RELAY_PER_S = 30_000.0
TARGET_CATCH_UP_PER_S = 10_000.0

REQUEST_TIMEOUT = 60.0  # one HTTP request, one command's outcome or projection
STARTUP_TIMEOUT = 120.0  # a server answering its readiness probe; the console set up
APPEND_BATCH = 500  # events per event-store append when filling the log
CATCH_UP_POLL_INTERVAL = 0.005  # reads in-process counters: no query
LAG_POLL_INTERVAL = 0.1  # between lag queries while the counters and the lag disagree


@dataclass
class Server:
    """An HTTP server this script started: uvicorn in a child process on a loopback port."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def check_alive(self) -> None:
        procs.check_alive(self.proc, self.name, self.log)

    def stop(self) -> None:
        procs.stop(self.proc)


async def _start_server(name: str, args: Callable[[int], list[str]],
                        env: Callable[[int], Mapping[str, str]], ready_path: str, log: Path,
                        alive: Callable[[], None] = lambda: None) -> Server:
    """Start a server on a free loopback port and wait until `ready_path` answers 200.
    A port taken between choosing and binding it costs a retry on another one."""
    for attempt in range(3):
        port = free_port()
        proc = procs.spawn(args(port), env(port), log)
        url = f"http://{LOOPBACK}:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                while True:
                    if proc.poll() is not None:
                        if "address already in use" in procs.tail(log).lower() and attempt < 2:
                            break
                        procs.check_alive(proc, name, log)
                    alive()
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(ready_path)).status_code == 200:
                            return Server(name, proc, url, log)
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{name}: {ready_path} not ready after {STARTUP_TIMEOUT:.0f} s; "
                            f"log {log}:\n{procs.tail(log)}")
                    await asyncio.sleep(0.1)
        except BaseException:
            procs.stop(proc)
            raise
        procs.stop(proc)
    raise RuntimeError(f"{name}: no free port after 3 attempts")


# --- the load generator: the same for Eddy and the baseline ---------------------------------


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of all values at or below it."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


@dataclass(frozen=True)
class Load:
    """One closed-loop run of the load generator."""

    requests: int
    elapsed: float
    latencies: tuple[float, ...]  # seconds, of the requests answered as expected, sorted
    errors: int
    first_error: str | None
    cpu: dict[str, float]  # CPU seconds per process during the run

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.elapsed


class LoadGenerator:
    """Closed loop over real TCP: `concurrency` virtual users, each an httpx.AsyncClient
    with one keep-alive connection, sending its next request as soon as the previous one
    answered. A client per user, not one shared pool: the pool's bookkeeping costs more CPU
    per request than a bare server spends (encode/httpx#3215), on the same two cores."""

    def __init__(self, url: str, concurrency: int, probe: str, cpu: procs.CpuProbes) -> None:
        self.url = url
        self.probe = probe  # a cheap GET that opens each user's connection before timing
        self.cpu = cpu
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.clients = [httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT, limits=limits)
                        for _ in range(concurrency)]

    async def __aenter__(self) -> LoadGenerator:
        try:
            await self.prime()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def prime(self) -> None:
        """Each user's connection open and fresh, outside the timing. uvicorn closes a
        keep-alive connection idle for 5 s (as one side's are while the other side runs):
        a request sent on it as it closes would fail, which is no fault of the server."""

        async def probe(client: httpx.AsyncClient) -> None:
            for attempt in range(3):
                try:
                    (await client.get(self.probe)).raise_for_status()
                    return
                except httpx.TransportError:
                    if attempt == 2:
                        raise

        await asyncio.gather(*(probe(c) for c in self.clients))

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients), return_exceptions=True)

    async def run(self, path: str, headers: Mapping[str, str], requests: int,
                  body: Callable[[int], dict[str, Any]], expect: int = 201) -> Load:
        pending = iter(range(requests))  # shared by the users: each takes the next number
        latencies: list[float] = []
        errors: list[str] = []

        async def user(client: httpx.AsyncClient) -> None:
            for i in pending:
                sent = time.perf_counter()
                try:
                    response = await client.post(path, json=body(i), headers=dict(headers))
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                took = time.perf_counter() - sent
                if response.status_code == expect:
                    latencies.append(took)
                else:
                    errors.append(f"{response.status_code} {response.text[:300]}")

        await self.prime()
        meter = procs.CpuMeter(self.cpu)
        start = time.perf_counter()
        async with asyncio.timeout(REQUEST_TIMEOUT + requests * 1.0), asyncio.TaskGroup() as g:
            for client in self.clients:
                g.create_task(user(client))
        elapsed = time.perf_counter() - start
        return Load(requests, elapsed, tuple(sorted(latencies)), len(errors),
                    errors[0] if errors else None, meter.used())


def _skip_missing_sniffio_lookups() -> None:
    """httpcore tries `import sniffio` several times per request to learn which async
    library runs it; with sniffio not installed, each failed import scans sys.path (about
    1 ms of the generator's CPU per request here). A None entry in sys.modules makes that
    import fail at once, and httpcore takes the branch it takes anyway: asyncio."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def _create_body(i: int) -> dict[str, Any]:
    return {"name": f"bench app {i}", "mode": "chat"}


@dataclass(frozen=True)
class HttpComparison:
    """Alternating rounds (baseline, Eddy, baseline, Eddy, ...): each round's ratio compares
    runs adjacent in time, so a neighbour loading the machine hits both about alike."""

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

    def cpu(self, side: str) -> tuple[dict[str, float], int]:
        """CPU seconds per process over all rounds, and the requests they served."""
        runs = self.runs(side)
        total = {name: sum(r.cpu[name] for r in runs) for name in runs[0].cpu}
        return total, sum(len(r.latencies) for r in runs)

    @property
    def ratio(self) -> float:
        return statistics.median(e.per_s / b.per_s
                                 for e, b in zip(self.eddy, self.baseline, strict=True))


def _fmt_load(load: Load) -> str:
    text = (f"{load.per_s:7.1f} req/s  p50 {_percentile(load.latencies, 0.5) * 1000:6.1f} ms"
            f"  p99 {_percentile(load.latencies, 0.99) * 1000:6.1f} ms")
    if load.latencies:
        text += f"; CPU per request: {procs.format_cpu(load.cpu, len(load.latencies), 'ms')}"
    if load.errors:
        text += f"  {load.errors} errors (first: {load.first_error})"
    return text


async def compare_http(eddy: LoadGenerator, eddy_headers: Mapping[str, str],
                       baseline: LoadGenerator, requests: int, rounds: int,
                       warmup: int) -> HttpComparison:
    for generator, headers in ((baseline, {}), (eddy, eddy_headers)):
        warm = await generator.run(CREATE_APP, headers, warmup, _create_body)
        if warm.errors:
            raise RuntimeError(f"warm-up of {generator.url} failed: {warm.first_error}")
    eddy_runs: list[Load] = []
    baseline_runs: list[Load] = []
    for n in range(1, rounds + 1):
        b = await baseline.run(CREATE_APP, {}, requests, _create_body)
        print(f"  round {n}: baseline {_fmt_load(b)}", flush=True)
        e = await eddy.run(CREATE_APP, eddy_headers, requests, _create_body)
        print(f"           eddy     {_fmt_load(e)}", flush=True)
        print(f"           eddy ÷ baseline {e.per_s / b.per_s:.2f}", flush=True)
        baseline_runs.append(b)
        eddy_runs.append(e)
    return HttpComparison(tuple(eddy_runs), tuple(baseline_runs))


# --- Eddy: settings, console login, accepted → read model -----------------------------------


def _settings(pg: EmbeddedPostgres, db: str, redis: EmbeddedRedis, kafka: str | None,
              data_dir: Path) -> Settings:
    """A deployment of its own: its database, and a fresh topic / Redis key prefix."""
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
    await asyncio.to_thread(migrate, settings)


async def _console_auth(url: str, alive: Callable[[], None]) -> dict[str, str]:
    """Set the console up (a command: proves the worker handles commands and projects) and
    log in; returns the Authorization header."""
    async with httpx.AsyncClient(base_url=url, timeout=STARTUP_TIMEOUT) as client:
        setup = await client.post("/console/api/setup", json={
            "email": EMAIL, "name": "Bench", "password": PASSWORD})
        if setup.status_code not in (201, 202):
            raise RuntimeError(f"setup: {setup.status_code} {setup.text[:500]}")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (await client.get("/console/api/setup")).json().get("step") != "finished":
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError("console setup not projected in time")
            await asyncio.sleep(0.2)
        login = await client.post("/console/api/login",
                                  json={"email": EMAIL, "password": PASSWORD})
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


# --- relay and projection catch-up, on a log filled directly --------------------------------


@dataclass(frozen=True)
class Throughput:
    events: int
    elapsed: float
    cpu: dict[str, float]  # CPU seconds per process meanwhile
    note: str = ""

    @property
    def per_s(self) -> float:
        return self.events / self.elapsed


async def _fill_event_store(c: Container, events: int) -> int:
    """`events` AppCreated events (each a new app of one workspace), appended in batches
    of APPEND_BATCH; returns the log's last position."""
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


def _raise_if_stopped(tasks: Sequence[asyncio.Task[None]], what: str) -> None:
    for task in tasks:
        if task.done():
            raise RuntimeError(f"{what} stopped early") from task.exception()


async def relay_into_bus(c: Container, end: int, events: int, timeout: float,
                         cpu: procs.CpuProbes) -> Throughput:
    """The relay from position 0: seconds until its recorded position reaches `end`."""
    relay = Relay(c.event_types, c.bus, c.routing, c.settings.database_dsn())
    conn = await asyncpg.connect(c.settings.database_dsn())
    stop = asyncio.Event()
    meter = procs.CpuMeter(cpu)
    start = time.perf_counter()
    task = asyncio.create_task(relay.run(stop), name="bench-relay")
    try:
        while True:
            position = await conn.fetchval(
                "SELECT position FROM relay_positions WHERE name = $1", relay.name) or 0
            now = time.perf_counter()
            if position >= end:
                return Throughput(events, now - start, meter.used())
            _raise_if_stopped([task], "the relay")
            if now - start > timeout:
                raise TimeoutError(f"relay at position {position} of {end} after {timeout:.0f} s")
            await asyncio.sleep(0.005)
    finally:
        await _stop_tasks(stop, [task])
        await conn.close()


async def projection_catch_up(c: Container, timeout: float, cpu: procs.CpuProbes) -> Throughput:
    """Every projection's processor from zero (new consumer groups, empty tracking) on the
    topics the relay filled: seconds until every pending event is projected.

    The processors' handled-message counters (this process, no I/O) say when the backlog is
    through, and `measure_lag` confirms it: timed by the lag query alone, the end was late
    by as much as the query took under load (seconds, with a backlog in flight)."""
    projections = list(c.projections.values())
    processors = [projection_processor(c, p) for p in projections]

    async def lag() -> int:
        return sum((await maintained_lags(c.engine, projections)).values())

    groups = {p.group for p in processors}

    def handled() -> float:
        # This counter's samples alone: the registry's would collect every metric (/proc too).
        return sum(s.value for m in HANDLED.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels["group"] in groups)

    pending = await lag()
    if pending == 0:
        raise RuntimeError("nothing to project")
    stop = asyncio.Event()
    policy = RetryPolicy(max_attempts=c.settings.CONSUMER_MAX_ATTEMPTS)
    counted = handled()  # the counters are process-wide: count from here
    meter = procs.CpuMeter(cpu)
    start = time.perf_counter()
    # What a worker's `projections` role runs (workers/node.py), here in this process.
    tasks = [asyncio.create_task(run_processor(
        c.bus, p, "bench-catch-up", stop, policy,
        concurrency=c.settings.CONSUMER_CONCURRENCY), name=f"bench-{p.group}")
        for p in processors]
    first: tuple[float, float] | None = None  # (seconds, messages handled) at the first ones
    confirm_at = 0.0  # no lag query before then (one said "not yet")
    try:
        while True:
            now = time.perf_counter()
            done = handled() - counted
            if first is None and done > 0:
                first = (now - start, done)
            # Counted as through: the lag query started now says whether it is (a processor
            # may also count messages the lag does not, e.g. events of other aggregates).
            if done >= pending and now >= confirm_at:
                if await lag() == 0:
                    return Throughput(pending, now - start, meter.used(),
                                      _catch_up_note(first, now - start, pending))
                confirm_at = time.perf_counter() + LAG_POLL_INTERVAL
            _raise_if_stopped(tasks, "a projection processor")
            if now - start > timeout:
                raise TimeoutError(f"projection lag {await lag()} of {pending} after "
                                   f"{timeout:.0f} s")
            await asyncio.sleep(CATCH_UP_POLL_INTERVAL)
    finally:
        await _stop_tasks(stop, tasks)


def _catch_up_note(first: tuple[float, float] | None, elapsed: float, events: int) -> str:
    """When the first events were projected (a new consumer group first joins: Kafka brokers
    hold a new group's first join, tansu 3 s), and the rate from then on."""
    if first is None or elapsed <= first[0]:
        return f"all projected at once after {elapsed:.2f} s"
    seconds, handled = first
    return (f"first events projected after {seconds:.2f} s, "
            f"then {(events - handled) / (elapsed - seconds):,.0f} events/s")


async def replay(settings: Settings, events: int,
                 infra: procs.CpuProbes) -> tuple[Throughput, Throughput]:
    """Relay and catch-up on a deployment of their own (database, topics), nothing else
    running: the relay and the projection processors run in this process, one at a time."""
    await _migrate(settings)
    c = await build(settings)
    try:
        appending = time.perf_counter()
        end = await _fill_event_store(c, events)
        print(f"  appended {events} events in {time.perf_counter() - appending:.1f} s; "
              "relaying …", flush=True)
        timeout = max(300.0, events / 50)  # a safety net: 50 events/s is far below normal
        relayed = await relay_into_bus(c, end, events, timeout,
                                       {"relay": procs.this_process, **infra})
        print(f"  relay: {relayed.per_s:,.0f} events/s; CPU per event: "
              f"{procs.format_cpu(relayed.cpu, events, 'µs')}", flush=True)
        projected = await projection_catch_up(c, timeout,
                                              {"processors": procs.this_process, **infra})
        print(f"  catch-up: {projected.per_s:,.0f} events/s ({projected.note}); CPU per "
              f"event: {procs.format_cpu(projected.cpu, projected.events, 'µs')}", flush=True)
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


async def bench_bus(bus: str, settings: Settings, replay_settings: Settings, baseline: Server,
                    postgres: Callable[[], float], bus_servers: procs.CpuProbes, root: Path,
                    opts: Options) -> BusResult:
    """`bus_servers`: CPU probes of the servers behind the bus (valkey; tansu on Kafka)."""
    await _migrate(settings)
    worker_log, api_log = root / f"{bus}-worker.log", root / f"{bus}-api.log"
    env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
    # All the worker roles in one process of their own, as `eddy worker` deploys them.
    worker = procs.spawn(["-m", "cli", "worker", "--member", "bench-worker"], env, worker_log)
    try:
        def worker_alive() -> None:
            procs.check_alive(worker, "eddy worker", worker_log)

        api = await _start_server(
            "eddy api", lambda port: ["-m", "cli", "api"],
            lambda port: {**env, "DIFY_BIND_ADDRESS": LOOPBACK, "DIFY_PORT": str(port)},
            "/ready", api_log, alive=worker_alive)
        try:
            def alive() -> None:
                worker_alive()
                api.check_alive()
                baseline.check_alive()

            headers = await _console_auth(api.url, alive)
            print(f"  eddy api {api.url} (pid {api.proc.pid}), eddy worker pid {worker.pid}, "
                  f"baseline {baseline.url} (pid {baseline.proc.pid})", flush=True)
            eddy_cpu: procs.CpuProbes = {"api": lambda: procs.tree_cpu(api.proc.pid),
                                         "worker": lambda: procs.tree_cpu(worker.pid),
                                         "postgres": postgres,
                                         **bus_servers, "generator": procs.this_process}
            baseline_cpu: procs.CpuProbes = {
                "server": lambda: procs.tree_cpu(baseline.proc.pid), "postgres": postgres,
                "generator": procs.this_process,
                procs.IDLE_EDDY: lambda: sum(eddy_cpu[name]()
                                             for name in ("api", "worker", *bus_servers))}
            async with LoadGenerator(api.url, opts.concurrency, "/console/api/setup",
                                     eddy_cpu) as eddy_load, \
                    LoadGenerator(baseline.url, opts.concurrency, "/health",
                                  baseline_cpu) as baseline_load:
                http = await compare_http(eddy_load, headers, baseline_load, opts.requests,
                                          opts.rounds, opts.warmup)
            alive()
            read_model = await accepted_to_read_model(settings, opts.commands, opts.concurrency)
            print(f"  accepted → read model: p50 {_percentile(read_model, 0.5) * 1000:.1f} ms"
                  f"  p99 {_percentile(read_model, 0.99) * 1000:.1f} ms", flush=True)
            alive()
        finally:
            api.stop()
    finally:
        procs.stop(worker)
    relay, catch_up = await replay(replay_settings, opts.events,
                                   {"postgres": postgres, **bus_servers})
    return BusResult(bus, http, tuple(read_model), relay, catch_up)


# --- report ----------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(results: Mapping[str, BusResult | BaseException], opts: Options) -> bool:
    """Print the results table; True when every target was reached."""
    rows: list[tuple[str, str, str, str, str]] = []
    all_met = True
    for bus, result in results.items():
        if isinstance(result, BaseException):
            rows.append((bus, "(not measured)", f"{type(result).__name__}: {result}"[:100],
                         "", "NO"))
            all_met = False
            continue
        h = result.http
        for side, label in (("eddy", "create-app over HTTP, Eddy"),
                            ("baseline", "create-app over HTTP, baseline")):
            errors = h.errors(side)
            rows.append((bus, label,
                         f"{h.per_s(side):,.1f} req/s  p50 {h.latency_ms(side, 0.5):.1f} ms"
                         f"  p99 {h.latency_ms(side, 0.99):.1f} ms"
                         + (f"  {errors} errors" if errors else ""), "", ""))
            cpu, served = h.cpu(side)
            rows.append(("", "  CPU per request", procs.format_cpu(cpu, served, "ms"), "", ""))
        ratio_ok = h.ratio >= TARGET_HTTP_RATIO and not h.errors("eddy")
        rows.append((bus, "Eddy ÷ baseline, req/s", f"{h.ratio:.2f}",
                     f"≥ {TARGET_HTTP_RATIO:.2f}", _met(ratio_ok)))
        p99 = _percentile(result.read_model, 0.99) * 1000
        p99_target = TARGET_READ_MODEL_P99_MS[bus]
        rows.append((bus, "accepted → read model",
                     f"p50 {_percentile(result.read_model, 0.5) * 1000:.1f} ms  p99 {p99:.1f} ms",
                     f"p99 ≤ {p99_target:.0f} ms", _met(p99 <= p99_target)))
        for label, run, target in (("relay into the bus", result.relay, TARGET_RELAY_PER_S),
                                   ("projection catch-up", result.catch_up,
                                    TARGET_CATCH_UP_PER_S)):
            rows.append((bus, label, f"{run.per_s:,.0f} events/s ({run.events} in "
                         f"{run.elapsed:.2f} s)", f"≥ {target:,.0f}/s",
                         _met(run.per_s >= target)))
            per_event = procs.format_cpu(run.cpu, run.events, "µs")
            rows.append(("", "  CPU per event", per_event, "", ""))
        all_met &= (ratio_ok and p99 <= p99_target and result.relay.per_s >= TARGET_RELAY_PER_S
                    and result.catch_up.per_s >= TARGET_CATCH_UP_PER_S)
    header = ("bus", "measure", "result", "target", "reached")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    print(f"\nResults. HTTP: {opts.rounds} rounds of {opts.requests} create-app requests per "
          f"side, {opts.concurrency} in flight (req/s: median of the rounds; latency and CPU: "
          f"all rounds). accepted → read model: {opts.commands} commands, "
          f"{opts.concurrency} in flight. Relay and catch-up: {opts.events} events.")
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    print(f"all targets reached: {_met(all_met)}; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return all_met


# --- main ------------------------------------------------------------------------------------


async def main_async(opts: Options, buses: Sequence[str]) -> bool:
    """True when every bus was measured (targets missed are results, not failures)."""
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
    completed = False
    try:
        redis = EmbeddedRedis(root / "redis").start()
        if "kafka" in buses:
            kafka = TansuBroker(log_path=root / "tansu.log").start()
        pg_pid, valkey = procs.postmaster_pid(pg), redis
        postgres = functools.partial(procs.tree_cpu, pg_pid)
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
            print(f"{bus}:", flush=True)
            servers = kafka.bootstrap_servers if bus == "kafka" and kafka else None
            bus_servers: procs.CpuProbes = {"valkey": functools.partial(procs.tree_cpu, valkey.pid)}
            if servers and kafka:
                bus_servers["tansu"] = functools.partial(procs.tree_cpu, kafka.pid)
            for db in (f"bench_{bus}", f"bench_{bus}_replay"):
                pg.create_database(db)
            try:
                results[bus] = await bench_bus(
                    bus, _settings(pg, f"bench_{bus}", redis, servers, root / bus),
                    _settings(pg, f"bench_{bus}_replay", redis, servers, root / bus),
                    baseline, postgres, bus_servers, root, opts)
            except Exception as exc:  # the other bus still runs; the table shows the failure
                print(f"  {bus} failed: {exc!r}", flush=True)
                results[bus] = exc
        report(results, opts)
        completed = not any(isinstance(r, BaseException) for r in results.values())
        return completed
    finally:
        if baseline is not None:
            baseline.stop()
        procs.stop_children()
        if kafka is not None:
            kafka.stop()
        if redis is not None:
            redis.stop()
        pg.stop()
        procs.finish(root, completed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000,
                        help="HTTP create-app requests per round and side (default 1000)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="requests (and commands) in flight (default 16)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating baseline / Eddy HTTP rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="unmeasured requests per side before the rounds (default 100)")
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
    _skip_missing_sniffio_lookups()
    opts = Options(args.requests, args.concurrency, args.rounds, args.warmup, args.commands,
                   args.events)
    try:
        completed = asyncio.run(main_async(opts, buses))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; stopped everything this run started", file=sys.stderr)
        sys.exit(130)
    sys.exit(0 if completed else 1)


if __name__ == "__main__":
    main()
