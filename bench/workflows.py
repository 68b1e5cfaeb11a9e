"""Workflow runs per second, the engine's overhead per node, and how fast a stop takes effect.

    .venv/bin/python -m bench.workflows [--concurrency 20] [--runs 200] [--rounds 2] [--stops 10]

One run starts embedded Postgres and Valkey, the fake OpenAI-protocol provider (answering at
once), `eddy worker` (all roles) and `eddy api` as processes (bench/chat_node.py), and
publishes a 5-node workflow through the console: start → code (python3, in the sandbox) →
llm → template-transform (jinja2, in the sandbox) → end. Then, in alternating rounds, each
with `--concurrency` closed-loop users:

- eddy: `POST /v1/workflows/run` blocking: the gateway's command, the event store, the relay,
  the bus, an engine member (load, fold, record each node's start and result), the task
  stream and the blocking answer;
- in process: the same graph in this script without the bus or the store: `fold` and the
  same executors called directly (the same sandbox, the same model client and provider).

It prints p50 / p99 run latency of each and runs/s, the ratio eddy / in process, and the
per-node overhead: (eddy - in process) / 5 at p50 and p99 (goal: ≤ 5 ms p50, ≤ 20 ms p99 at
20 concurrent runs), with the CPU milliseconds each Eddy process spent per run. Then the stop:
`--stops` streamed runs whose model answers slowly, each stopped (`POST
/v1/workflows/tasks/{task_id}/stop`) once its llm node started; the time from the stop request
to the stream's `workflow_finished` with status `stopped` (goal ≤ 1 s). Stops everything it
started, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import orjson
from sqlalchemy import select

from bench import procs
from bench.chat import fmt
from bench.chat_node import MODEL, ChatNode, chat_node
from bench.commands import _percentile
from bootstrap import Container, build
from projections.platform.tables import workspaces
from schemas.workflow import events as ev
from tests.fakes.openai_server import ScriptedChat
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import NodeCall, NodeResult, RunInfo
from workers.workflow.services import WorkflowServices, workflow_services
from workflow_graph.graph import Graph, parse_graph
from workflow_graph.scheduler import (
    Fact,
    Limits,
    NodeStarted,
    NodeSucceeded,
    RunStarted,
    RunStatus,
    fold,
)

NODES = 5
GOAL_P50_MS, GOAL_P99_MS, GOAL_STOP_S = 5.0, 20.0, 1.0
SLOW = "SLOW"  # a prompt with it gets a slow answer (the stop's runs)


def _node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "custom", "position": {"x": 0, "y": 0},
            "data": {"type": node_type, "title": node_id, **data}}


def _edge(source: str, target: str) -> dict[str, Any]:
    return {"id": f"{source}-{target}", "source": source, "target": target,
            "sourceHandle": "source", "targetHandle": "target"}


GRAPH: dict[str, Any] = {
    "nodes": [
        _node("start", "start", variables=[{"variable": "x", "label": "x",
                                             "type": "text-input", "required": True}]),
        _node("code", "code", code_language="python3",
              code="def main(x):\n    return {'y': x.upper()}",
              variables=[{"variable": "x", "value_selector": ["start", "x"]}],
              outputs={"y": {"type": "string", "children": None}}),
        _node("llm", "llm", model={"provider": "openai_api_compatible", "name": MODEL,
                                   "mode": "chat", "completion_params": {}},
              prompt_template=[{"role": "user", "text": "{{#code.y#}}"}],
              context={"enabled": False}),
        _node("template", "template-transform", template="{{ answer }}!",
              variables=[{"variable": "answer", "value_selector": ["llm", "text"]}]),
        _node("end", "end", outputs=[{"variable": "result",
                                      "value_selector": ["template", "output"]}]),
    ],
    "edges": [_edge("start", "code"), _edge("code", "llm"), _edge("llm", "template"),
              _edge("template", "end")],
}


def answer(body: dict[str, Any]) -> ScriptedChat:
    """At once, or (the stop's runs) 100 chunks 50 ms apart."""
    if SLOW in str(body["messages"][-1]["content"]):
        return ScriptedChat("x " * 100, chunks=["x "] * 100, chunk_delay=0.05)
    return ScriptedChat("fast answer")


async def publish(node: ChatNode) -> dict[str, str]:
    """A workflow app with GRAPH published through the console; its Service API header."""
    async with httpx.AsyncClient(base_url=node.api.url, timeout=60,
                                 headers=node.auth) as c:
        app = (await c.post("/console/api/apps", json={"name": "Flow", "mode": "workflow"})
               ).json()
        base = f"/console/api/apps/{app['id']}/workflows"
        draft = (await c.get(f"{base}/draft")).json()
        (await c.post(f"{base}/draft", json={
            "graph": GRAPH, "features": {}, "environment_variables": [],
            "conversation_variables": [], "hash": draft["hash"]})).raise_for_status()
        (await c.post(f"{base}/publish", json={})).raise_for_status()
        token = (await c.post(f"/console/api/apps/{app['id']}/api-keys")).json()["token"]
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Sample:
    """One run: its latency as its client saw it, and the part of it no executor took (the
    engine's or the in-process loop's own time)."""

    latency: float
    outside_executors: float
    parts: dict[str, float] = field(default_factory=dict)  # eddy's: see `breakdown`


class InProcess:
    """GRAPH run the engine's way, minus the engine: fold the facts so far, call the
    executors of what it says to start, add their results; no store, no bus, no stream."""

    def __init__(self, services: WorkflowServices, tenant_id: UUID) -> None:
        self.services = services
        self.tenant_id = tenant_id
        self.graph: Graph = parse_graph(GRAPH)
        self.limits = Limits()

    async def run(self, x: str) -> tuple[Mapping[str, Any], float]:
        """The run's outputs, and the seconds its executors took."""
        info = RunInfo(run_id=uuid.uuid4(), task_id=uuid.uuid4(), app_id=uuid.uuid4(),
                       tenant_id=self.tenant_id, workflow_id=uuid.uuid4(), mode="workflow",
                       user="bench", end_user_id=None, inputs={"x": x})
        facts: list[Fact] = [RunStarted(inputs={"x": x}, system={
            "workflow_run_id": str(info.run_id), "user_id": "bench"}, at=time.time())]
        executing = 0.0
        while True:
            state = fold(self.graph, facts, self.limits, now=time.time())
            if state.status is RunStatus.SUCCEEDED:
                return state.outputs, executing
            if state.status is RunStatus.FAILED:
                raise RuntimeError(state.error)
            starting = [self.graph.node(n) for n in state.to_start]
            facts += [NodeStarted(n.id) for n in starting]
            began = time.perf_counter()
            results: list[NodeResult] = await asyncio.gather(*(
                EXECUTORS[n.type](NodeCall(
                    node=n, graph=self.graph, pool=state.pool, run=info,
                    services=self.services, idempotency_key=f"{info.run_id}:{n.id}",
                    emit=_nowhere, executors=EXECUTORS)) for n in starting))
            executing += time.perf_counter() - began
            facts += [NodeSucceeded(n.id, r.outputs, r.handle, r.updates)
                      for n, r in zip(starting, results, strict=True)]


async def _nowhere(kind: str, data: Mapping[str, Any]) -> None:
    """The in-process run streams to no one."""


async def in_process_services(container: Container) -> tuple[WorkflowServices, UUID]:
    async with container.engine.connect() as conn:
        tenant_id = (await conn.execute(select(workspaces.c.id))).scalar_one()
    c = container
    return workflow_services(
        settings=c.settings, engine=c.engine, read_models=c.read_models, kv=c.kv,
        storage=c.storage, store=c.store, embedding_models=c.embedding_models,
        vectors=c.vectors, keywords=c.keywords), tenant_id


async def stop_latency(client: httpx.AsyncClient, key: dict[str, str]) -> float:
    """Seconds from the stop request (sent once the llm node started) to `stopped`."""
    asked = 0.0
    async with client.stream("POST", "/v1/workflows/run", headers=key, json={
            "inputs": {"x": SLOW.lower()}, "user": "bench",
            "response_mode": "streaming"}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = orjson.loads(line[len("data: "):])
            if event["event"] == "node_started" and event["data"]["node_id"] == "llm":
                asked = time.perf_counter()
                stopped = await client.post(f"/v1/workflows/tasks/{event['task_id']}/stop",
                                            headers=key, json={"user": "bench"})
                stopped.raise_for_status()
            elif event["event"] == "workflow_finished":
                status = event["data"]["status"]
                assert status == "stopped" and asked, f"the run ended {status}"
                return time.perf_counter() - asked
    raise AssertionError("the stream ended without workflow_finished")


async def users(concurrency: int, per_user: int,
                one: Callable[[httpx.AsyncClient], Awaitable[Sample]]) -> list[Sample]:
    """`concurrency` closed-loop users, each starting its next run when its last ended."""
    async def user() -> list[Sample]:
        async with httpx.AsyncClient(timeout=120) as client:
            return [await one(client) for _ in range(per_user)]

    return [s for ss in await asyncio.gather(*(user() for _ in range(concurrency))) for s in ss]


PARTS = ("accepted", "picked up", "around nodes", "answered")


def breakdown(container: Container, run_id: UUID, sent: float, received: float
              ) -> tuple[float, dict[str, float]]:
    """The seconds the run's executors took, as the engine recorded them, and where the rest
    of the client's wait went, by the run's recorded events (wall clock, one host): the
    gateway's command until the run was recorded (accepted), until an engine member recorded
    its first node (picked up), the engine's time around each node beyond its executor
    (recording its start and result, streaming them), and from the run's end to the
    client's answer (answered)."""
    events = container.store.load(run_id)
    at = [e.occurred_at.timestamp() for e in events]
    started: dict[str, float] = {}
    around = took = 0.0
    for event, when in zip(events, at, strict=True):
        p = event.payload
        if isinstance(p, ev.WorkflowNodeStarted):
            started[p.node_id] = when
        elif isinstance(p, ev.WorkflowNodeSucceeded):
            took += p.elapsed_time
            around += when - started[p.node_id] - p.elapsed_time
    first_node = min(started.values())
    return took, {"accepted": at[0] - sent, "picked up": first_node - at[0],
                  "around nodes": around, "answered": received - at[-1]}


def percentiles(values: Sequence[float]) -> dict[float, float]:
    return {q: _percentile(sorted(values), q) for q in (0.5, 0.99)}


async def main_async(concurrency: int, runs: int, rounds: int, stops: int) -> bool:
    async with chat_node("workflows") as node:
        node.provider.chat_responder = answer
        key = await publish(node)
        container = await build(node.settings)
        services, tenant_id = await in_process_services(container)
        local = InProcess(services, tenant_id)
        body = {"inputs": {"x": "hello"}, "user": "bench", "response_mode": "blocking"}

        async def eddy_run(client: httpx.AsyncClient) -> Sample:
            sent, started = time.time(), time.perf_counter()
            r = await client.post(f"{node.api.url}/v1/workflows/run", headers=key, json=body)
            latency, received = time.perf_counter() - started, time.time()
            r.raise_for_status()
            data = r.json()["data"]
            assert data["status"] == "succeeded", data
            assert data["outputs"] == {"result": "fast answer!"}, data
            took, parts = await asyncio.to_thread(breakdown, container, UUID(data["id"]),
                                                  sent, received)
            return Sample(latency, latency - took, parts)

        async def local_run(_: httpx.AsyncClient) -> Sample:
            started = time.perf_counter()
            outputs, took = await local.run("hello")
            latency = time.perf_counter() - started
            assert outputs == {"result": "fast answer!"}, outputs
            return Sample(latency, latency - took)

        ways: dict[str, Callable[[httpx.AsyncClient], Awaitable[Sample]]] = {
            "eddy": eddy_run, "in process": local_run}
        postgres = procs.postmaster_pid(node.pg)
        eddy_cpu: procs.CpuProbes = {
            "api": lambda: procs.tree_cpu(node.api.proc.pid),
            # the sandboxed nodes' processes apart: executor time, not the engine's
            "worker": lambda: procs.tree_cpu(node.worker.pid) - procs.reaped_cpu(node.worker.pid),
            "sandbox": lambda: procs.reaped_cpu(node.worker.pid),
            "postgres": lambda: procs.tree_cpu(postgres),
            "redis": lambda: procs.tree_cpu(node.redis.pid)}
        for one in ways.values():
            await users(4, 3, one)  # warm up: the sandbox's cage, connections
        per_user = max(1, runs // concurrency)
        samples: dict[str, list[Sample]] = {name: [] for name in ways}
        elapsed: dict[str, float] = dict.fromkeys(ways, 0.0)
        cpu: dict[str, float] = {}
        for r in range(rounds):
            for name, one in ways.items():
                meter = procs.CpuMeter(eddy_cpu) if name == "eddy" else None
                began = time.perf_counter()
                samples[name] += await users(concurrency, per_user, one)
                elapsed[name] += time.perf_counter() - began
                for part, seconds in (meter.used() if meter else {}).items():
                    cpu[part] = cpu.get(part, 0.0) + seconds
            print(f"round {r + 1}: " + "  ".join(
                f"{n} p50 {percentiles([x.latency for x in v])[0.5] * 1000:.1f} ms"
                for n, v in samples.items()), flush=True)
        print(f"\n== {concurrency} concurrent runs, {len(samples['eddy'])} runs each way, "
              f"{NODES} nodes (start → code → llm → template-transform → end) ==")
        for name, values in samples.items():
            print(f"  {name:10s} run {fmt([v.latency for v in values])}  "
                  f"{len(values) / elapsed[name]:6.1f} runs/s   outside the executors "
                  f"{fmt([v.outside_executors for v in values])}")
        print("  eddy outside the executors: " + "  ".join(
            f"{part} p50 {percentiles([v.parts[part] for v in samples['eddy']])[0.5] * 1000:.1f}"
            f" / p99 {percentiles([v.parts[part] for v in samples['eddy']])[0.99] * 1000:.1f} ms"
            for part in PARTS))
        run = {n: percentiles([v.latency for v in vs]) for n, vs in samples.items()}
        own = {n: percentiles([v.outside_executors for v in vs]) for n, vs in samples.items()}
        print("  eddy / in process: " + "  ".join(
            f"p{int(q * 100)} x{run['eddy'][q] / run['in process'][q]:.2f}" for q in run["eddy"])
            + f"  runs/s x{elapsed['in process'] / elapsed['eddy']:.2f}")
        # what the engine adds per node: its time outside the executors beyond the
        # in-process loop's, per node (the executors' own time varies with the load, the
        # sandbox's most: it is the same code both ways, so it is left out)
        overhead = {q: (own["eddy"][q] - own["in process"][q]) / NODES * 1000
                    for q in own["eddy"]}
        print(f"  per-node overhead: p50 {overhead[0.5]:.1f} ms (goal ≤ {GOAL_P50_MS:.0f})  "
              f"p99 {overhead[0.99]:.1f} ms (goal ≤ {GOAL_P99_MS:.0f})")
        print(f"  eddy CPU per run: {procs.format_cpu(cpu, len(samples['eddy']), 'ms')}")
        async with httpx.AsyncClient(base_url=node.api.url, timeout=60) as client:
            stop = [await stop_latency(client, key) for _ in range(stops)]
        print(f"\nstop → stopped ({stops} runs, llm node in flight): {fmt(stop)}  "
              f"max {max(stop) * 1000:.1f} ms (goal ≤ {GOAL_STOP_S * 1000:.0f} ms)")
        met = overhead[0.5] <= GOAL_P50_MS and overhead[0.99] <= GOAL_P99_MS \
            and max(stop) <= GOAL_STOP_S
        print(f"all goals met: {'yes' if met else 'NO'}")
        await services.llm_clients.aclose()
        await container.close()
        return met


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200, help="per round and way")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stops", type=int, default=10, choices=range(1, 101),
                        metavar="1..100")
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.concurrency, args.runs, args.rounds, args.stops))


if __name__ == "__main__":
    main()
