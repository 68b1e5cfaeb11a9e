"""Eddy heals by itself when a server it depends on restarts: Postgres, Redis or the Kafka
broker goes down under load, requests answer 503 (or 202 for commands already accepted)
while it is down, and within seconds of its return every role has reconnected and caught
up, with nothing lost or doubled. Each test runs its own server, so it can restart it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from adapters.bus.base import Message, OutgoingMessage, TopicSpec
from adapters.bus.kafka import BrokerUnavailable, KafkaBus, KafkaConsumer
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.tansu import TansuBroker, s3_storage
from adapters.embedded.valkey import EmbeddedRedis
from adapters.transient import is_transient
from bootstrap import ASSEMBLY
from config import Settings
from schemas.topics import COMMANDS
from tests.harness import Node, eventually, node_settings, running_node
from workers.node import all_roles

ROOT = Path(__file__).resolve().parents[2]
PARAGRAPHS = "\n\n".join(
    f"Paragraph {i} about restarting servers, retries and self-healing workers number {i}."
    for i in range(12))


@pytest.fixture
def durable_kafka(embedded_root: Path, s3_endpoint: str) -> Iterator[TansuBroker]:
    """A tansu broker of its own on S3 (moto) storage, so it keeps its topics, messages
    and group offsets across a restart (memory storage would lose them all)."""
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    ).create_bucket(Bucket=bucket)  # tansu needs it to exist
    broker = TansuBroker(storage=s3_storage(bucket, s3_endpoint),
                         log_path=embedded_root / f"{bucket}.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def _keys(node: Node) -> tuple[dict[str, str], dict[str, str]]:
    auth = await node.setup_and_login()
    token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
    return auth, {"Authorization": f"Bearer {token['token']}"}


async def _start_documents(node: Node, key: dict[str, str], count: int) -> tuple[str, str]:
    dataset = (await node.client.post("/v1/datasets", headers=key, json={
        "name": "healing", "indexing_technique": "economy"})).json()
    batch = ""
    for i in range(count):
        r = await node.client.post(
            f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
            json={"name": f"doc {i}", "text": PARAGRAPHS, "process_rule": {"mode": "automatic"}})
        assert r.status_code == 200, r.text
        batch = r.json()["batch"]
    return dataset["id"], batch


async def _caught_up(node: Node, auth: dict[str, str], key: dict[str, str], dataset_id: str,
                     documents: int) -> Any:
    status = await node.client.get("/status.json", headers=auth)
    if status.status_code != 200 or status.json()["status"] != "ok":
        return None
    checks = status.json()["dependencies"]
    if checks["relay"]["lag"] or any(checks["projections"]["lag"].values()):
        return None
    listed = (await node.client.get(f"/v1/datasets/{dataset_id}/documents?limit=100",
                                    headers=key)).json()["data"]
    statuses = [d["indexing_status"] for d in listed]
    return statuses if statuses == ["completed"] * documents else None


async def test_postgres_restart_under_load_heals_without_losing_anything(
        own_postgres: EmbeddedPostgres, redis_url: str) -> None:
    database = f"heal_{uuid.uuid4().hex[:8]}"
    own_postgres.create_database(database)
    settings = node_settings(own_postgres, database, redis_url, COMMAND_TIMEOUT_SECONDS=3,
                             PROJECTION_WAIT_SECONDS=3)
    async with running_node(settings) as node:
        auth, key = await _keys(node)
        dataset_id, _ = await _start_documents(node, key, 6)

        await asyncio.to_thread(own_postgres.stop)  # mid-indexing
        read = await node.client.get("/console/api/apps", headers=auth)
        assert read.status_code == 503, read.text
        assert read.json()["code"] == "service_unavailable" and read.headers["Retry-After"]
        # Commands still reach the bus (Redis is up): accepted, answered "pending".
        accepted = await node.client.post("/console/api/apps", headers=auth,
                                          json={"name": "while down", "mode": "chat"})
        assert accepted.status_code in (202, 503), accepted.text
        await asyncio.sleep(2)
        await asyncio.to_thread(own_postgres.start)

        await eventually(lambda: _caught_up(node, auth, key, dataset_id, 6), timeout=30,
                         interval=0.5)
        if accepted.status_code == 202:  # the accepted command took effect exactly once
            status = await eventually(lambda: _settled(node, auth, accepted.json()["status_url"]),
                                      timeout=30)
            assert status["status"] == "accepted"
            apps = (await node.client.get("/console/api/apps", headers=auth)).json()["data"]
            assert [a["name"] for a in apps].count("while down") == 1
        after = await node.client.post("/console/api/apps", headers=auth,
                                       json={"name": "after", "mode": "chat"})
        assert after.status_code == 201, after.text


async def _settled(node: Node, auth: dict[str, str], url: str) -> Any:
    r = await node.client.get(url, headers=auth)
    return r.json() if r.status_code == 200 and r.json().get("status") != "pending" else None


async def test_redis_restart_under_load_heals_without_losing_anything(
        postgres: EmbeddedPostgres, own_redis: EmbeddedRedis,
        fresh_database: Any) -> None:
    settings = node_settings(postgres, fresh_database("heal"), own_redis.url,
                             COMMAND_TIMEOUT_SECONDS=3, PROJECTION_WAIT_SECONDS=3)
    async with running_node(settings) as node:
        auth, key = await _keys(node)
        dataset_id, _ = await _start_documents(node, key, 6)

        await asyncio.to_thread(own_redis.stop)
        refused = await node.client.post("/console/api/apps", headers=auth,
                                         json={"name": "while down", "mode": "chat"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "service_unavailable"
        assert refused.headers["Retry-After"]
        await asyncio.sleep(1)
        await asyncio.to_thread(own_redis.start)

        await eventually(lambda: _caught_up(node, auth, key, dataset_id, 6), timeout=30,
                         interval=0.5)
        after = await node.client.post("/console/api/apps", headers=auth,
                                       json={"name": "after", "mode": "chat"})
        assert after.status_code == 201, after.text
        apps = (await node.client.get("/console/api/apps", headers=auth)).json()["data"]
        assert [a["name"] for a in apps] == ["after"]


async def _fetch_values(consumer: KafkaConsumer, count: int) -> list[bytes]:
    got: list[Message] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while len(got) < count and loop.time() < deadline:
        for message in await consumer.fetch(timeout=0.5):
            got.append(message)
            await consumer.ack(message)
    return sorted(m.value for m in got)


@pytest.mark.kafka
async def test_kafka_bus_rides_out_a_broker_restart(durable_kafka: TansuBroker) -> None:
    """The bus alone: while the broker is down a publish fails at once with a transient
    error (nothing queued to surface later); after it returns the same producer and
    consumer carry on, with nothing lost or delivered twice."""
    bus = KafkaBus(durable_kafka.bootstrap_servers, prefix=f"t{uuid.uuid4().hex[:8]}.",
                   session_timeout_ms=6000)
    await bus.start()
    consumer = bus.consumer("heal", ["heal"], "m1")
    try:
        await bus.ensure_topics([TopicSpec("heal", 2)])
        await bus.publish_many([OutgoingMessage("heal", f"k{i}", b"before %d" % i)
                                for i in range(4)])
        await consumer.start()
        assert await _fetch_values(consumer, 4) == [b"before %d" % i for i in range(4)]

        await asyncio.to_thread(durable_kafka.kill)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as refused:
            await bus.publish("heal", "k0", b"while down")
        assert is_transient(refused.value) and time.monotonic() - started < 2
        with pytest.raises(BrokerUnavailable):
            await bus.ping()
        assert await consumer.fetch(timeout=0.5) == []
        await asyncio.to_thread(durable_kafka.start)

        await bus.publish_many([OutgoingMessage("heal", f"k{i}", b"after %d" % i)
                                for i in range(4)])
        # Acked offsets survived: only the new messages arrive, each once.
        assert await _fetch_values(consumer, 4) == [b"after %d" % i for i in range(4)]
        assert await consumer.fetch(timeout=1) == []
    finally:
        await consumer.stop()
        await bus.stop()


@dataclass
class _Write:
    name: str
    sent: float
    answered: float
    response: httpx.Response


async def _write_until(node: Node, auth: dict[str, str], prefix: str, writes: list[_Write],
                       done: asyncio.Event) -> None:
    """Create apps one after another until `done`: commands flowing through the outage."""
    count = 0
    while not done.is_set():
        name, sent = f"{prefix} {count}", time.monotonic()
        count += 1
        r = await node.client.post("/console/api/apps", headers=auth,
                                   json={"name": name, "mode": "chat"})
        writes.append(_Write(name, sent, time.monotonic(), r))
        if r.status_code == 503:
            await asyncio.sleep(0.2)  # a client honouring Retry-After, only quicker


async def _created_since(writes: list[_Write], since: float) -> bool:
    return any(w.sent > since and w.response.status_code == 201 for w in writes)


def _completed_publishes(node: Node, topic: str) -> list[float]:
    """From now on, when each publish to `topic` completed (the broker took the message)."""
    done: list[float] = []
    bus = node.container.bus
    publish = bus.publish

    async def noting(topic_: str, key: str, value: bytes,
                     headers: dict[str, str] | None = None) -> None:
        await publish(topic_, key, value, headers)
        if topic_ == topic:
            done.append(time.monotonic())

    bus.publish = noting  # type: ignore[method-assign]
    return done


async def _after(times: list[float], since: float) -> bool:
    return any(t > since for t in times)


@pytest.mark.kafka
async def test_kafka_broker_restart_under_load_heals_without_losing_anything(
        postgres: EmbeddedPostgres, redis_url: str, fresh_database: Any,
        durable_kafka: TansuBroker) -> None:
    # A command published before the broker dies waits its return out (up to the timeout):
    # the command member runs apart and is paused across the outage (SIGSTOP, past its
    # session), so commands published before the crash are surely still waiting when it
    # comes; the outage (2 s down, the broker's start, the member's rejoin) fits in the
    # timeout.
    settings = node_settings(postgres, fresh_database("heal"), redis_url,
                             kafka_bootstrap=durable_kafka.bootstrap_servers,
                             COMMAND_TIMEOUT_SECONDS=30, PROJECTION_WAIT_SECONDS=5)
    roles = [r for r in all_roles(ASSEMBLY.work) if r != "commands"]
    async with running_node(settings, roles=roles) as node:
        commands = _command_member(settings)
        try:
            await _outage_under_load(node, settings, durable_kafka, commands)
        finally:
            commands.send_signal(signal.SIGCONT)
            commands.kill()
            commands.wait()


def _command_member(settings: Settings) -> subprocess.Popen[bytes]:
    """`eddy worker --roles commands`, a process of its own (to be paused)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--roles", "commands", "--member", "cmd-1"],
        env={**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _outage_under_load(node: Node, settings: Settings, broker: TansuBroker,
                             commands: subprocess.Popen[bytes]) -> None:
    """Writes flow, the command member pauses, the broker dies and comes back."""
    auth, key = await _keys(node)
    dataset_id, _ = await _start_documents(node, key, 6)
    writes: list[_Write] = []
    stop_writing = asyncio.Event()
    writers = [asyncio.create_task(_write_until(node, auth, f"load{w}", writes, stop_writing))
               for w in range(3)]
    await eventually(lambda: _created_since(writes, 0))  # commands flow
    commands.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    # One more command, published while the member is paused: the broker dies only once the
    # broker has taken it (each writer may already be waiting on the member with its own).
    published = _completed_publishes(node, COMMANDS)
    writers.append(asyncio.create_task(_write_until(node, auth, "waiting", writes,
                                                    stop_writing)))
    await eventually(lambda: _after(published, paused))

    await asyncio.to_thread(broker.kill)  # mid-indexing
    down = time.monotonic()
    refused = await asyncio.wait_for(node.client.post(
        "/console/api/apps", headers=auth, json={"name": "while down", "mode": "chat"}),
        timeout=settings.COMMAND_TIMEOUT_SECONDS)  # fails fast, never hangs
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "service_unavailable"
    assert refused.headers["Retry-After"]
    await asyncio.sleep(max(0.0, 2 - (time.monotonic() - down)))
    await asyncio.to_thread(broker.start)  # same port, same storage
    back = time.monotonic()
    commands.send_signal(signal.SIGCONT)

    try:  # writes flow again, then stop so that the lag can reach 0
        await eventually(lambda: _created_since(writes, back), timeout=45)
    finally:
        stop_writing.set()
        await asyncio.gather(*writers)
    # Everything within 45 s of the broker's return (about 5 s in practice).
    await eventually(lambda: _caught_up(node, auth, key, dataset_id, 6),
                     timeout=45 - (time.monotonic() - back), interval=0.5)
    codes = {w.name: w.response.status_code for w in writes}
    assert set(codes.values()) <= {201, 202, 503}, codes
    # Published before the crash, answered after the broker's return: it waited it out.
    assert any(paused < w.sent < down and w.answered > back for w in writes), codes
    for w in writes:
        if w.response.status_code == 202:  # accepted, not yet done: it takes effect
            status = await eventually(
                partial(_settled, node, auth, w.response.json()["status_url"]), timeout=30)
            assert status["status"] == "accepted"
    after = await node.client.post("/console/api/apps", headers=auth,
                                   json={"name": "after", "mode": "chat"})
    assert after.status_code == 201, after.text

    listed = (await node.client.get("/console/api/apps?limit=100", headers=auth)).json()
    names = [a["name"] for a in listed["data"]]
    assert listed["total"] == len(names), listed["total"]  # all on this page
    assert names.count("after") == 1 and "while down" not in names, names
    for name, code in codes.items():  # accepted: exactly once; refused: not at all
        assert names.count(name) == (0 if code == 503 else 1), (name, code, names)
