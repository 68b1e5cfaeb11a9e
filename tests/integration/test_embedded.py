"""The embedded servers really start, listen on loopback TCP and keep their data."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from adapters.embedded.ports import wait_until
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis


async def _connect(pg: EmbeddedPostgres, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(host=pg.host, port=pg.port, user=pg.user, database=database)


# -- Postgres ---------------------------------------------------------------------------


async def test_postgres_serves_tcp_with_pgvector(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str]
) -> None:
    db = fresh_database("vec")
    postgres.ensure_extension(db, "vector")
    postgres.ensure_extension(db, "vector")  # idempotent

    conn = await _connect(postgres, db)
    try:
        server_addr = await conn.fetchval("SELECT inet_server_addr()")
        assert ipaddress.ip_address(str(server_addr).split("/")[0]) == ipaddress.ip_address(
            "127.0.0.1"
        )
        assert await conn.fetchval("SELECT current_setting('server_version_num')::int") >= 180000

        await conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
        await conn.execute(
            "INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[4,6,3]'), (3, '[0,0,1]')"
        )
        # Euclidean distance from [1,2,3]: |[3,4,0]| = 5 for item 2.
        rows = await conn.fetch("SELECT id, embedding <-> '[1,2,3]' AS d FROM items ORDER BY d, id")
        assert [r["id"] for r in rows] == [1, 3, 2]
        assert rows[0]["d"] == 0.0
        assert rows[2]["d"] == pytest.approx(5.0)
        # Cosine distance of orthogonal vectors is 1.
        cosine = await conn.fetchval("SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector")
        assert cosine == pytest.approx(1.0)
    finally:
        await conn.close()


def test_create_database_is_idempotent(postgres: EmbeddedPostgres) -> None:
    name = f"idem_{uuid.uuid4().hex[:8]}"
    assert postgres.create_database(name) is True
    assert postgres.create_database(name) is False
    postgres.drop_database(name)
    assert postgres.create_database(name) is True


async def test_postgres_restart_keeps_rows_and_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    first = EmbeddedPostgres(data_dir)
    try:
        first.start()
        port = first.port
        conn = await _connect(first, "postgres")
        try:
            await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
            await conn.execute("INSERT INTO kept VALUES (1, 'one'), (2, 'two')")
        finally:
            await conn.close()

        # A second owner of the same dir adopts the running server instead of failing.
        adopter = EmbeddedPostgres(data_dir).start()
        assert adopter.port == port

        first.stop()
        assert not first.is_running()

        second = EmbeddedPostgres(data_dir).start()
        assert second.port == port  # remembered in the data dir
        conn = await _connect(second, "postgres")
        try:
            rows = await conn.fetch("SELECT id, note FROM kept ORDER BY id")
        finally:
            await conn.close()
        assert [tuple(r) for r in rows] == [(1, "one"), (2, "two")]
    finally:
        first.stop()
    assert not first.is_running()


async def test_postgres_sigkilled_comes_back_on_its_port(tmp_path: Path) -> None:
    """What `eddy up` does when the postmaster is SIGKILLed: start() again on the same
    object, though a busy orphaned backend still holds the old shared memory."""
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        server.start()
        port = server.port
        conn = await _connect(server, "postgres")
        await conn.execute("CREATE TABLE kept AS SELECT 1 AS id")
        busy = await _connect(server, "postgres")
        query = asyncio.ensure_future(busy.execute("SELECT count(*) FROM generate_series(1, 1e10)"))
        await asyncio.sleep(0.5)  # the query is running: its backend won't notice for a while
        os.kill(int((server.data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        wait_until(lambda: not server.is_running(), 5, "postgres death noticed")

        await asyncio.to_thread(server.start)
        assert server.port == port
        conn2 = await _connect(server, "postgres")
        assert await conn2.fetchval("SELECT id FROM kept") == 1
        await conn2.close()
        for c in (conn, busy):
            c.terminate()
        query.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await query  # failed with the connection: nothing to report
    finally:
        server.stop()
    assert not server.is_running()


# -- Valkey -----------------------------------------------------------------------------


def test_redis_fixture_answers(redis_server: EmbeddedRedis, redis_url: str) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.close()


def test_valkey_aof_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "valkey"
    server = EmbeddedRedis(data_dir)
    try:
        server.start()
        port, pid = server.port, server.pid
        client = redis.Redis.from_url(server.url)
        client.set("greeting", "hello")
        client.xadd("stream", {"n": "1"})
        client.close()

        adopter = EmbeddedRedis(data_dir).start()
        assert (adopter.port, adopter.pid) == (port, pid)

        server.stop()
        assert not server.is_running()
        assert (data_dir / "appendonlydir").is_dir()

        restarted = EmbeddedRedis(data_dir).start()
        assert restarted.port == port
        assert restarted.pid != pid
        client = redis.Redis.from_url(restarted.url)
        try:
            assert client.get("greeting") == b"hello"
            assert client.xlen("stream") == 1
        finally:
            client.close()
    finally:
        server.stop()
    assert not server.is_running()


def test_valkey_sigkilled_comes_back_on_its_port_with_its_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "valkey")
    try:
        server.start()
        port, pid = server.port, server.pid
        assert pid is not None
        client = redis.Redis.from_url(server.url)
        client.set("greeting", "hello")
        client.close()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not server.is_running(), 5, "valkey death noticed")

        server.start()
        assert server.port == port
        assert server.pid not in (None, pid)
        client = redis.Redis.from_url(server.url)
        try:
            assert client.get("greeting") == b"hello"
        finally:
            client.close()
    finally:
        server.stop()
    assert not server.is_running()


# -- Tansu (Kafka protocol) -------------------------------------------------------------


@pytest.mark.kafka
async def test_tansu_produce_and_consume(kafka_bootstrap: str) -> None:
    topic = f"eddy.test.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    sent = {(p, f"k{p}-{i}".encode(), f"v{p}-{i}".encode()) for p in (0, 1) for i in range(3)}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition, key, value in sorted(sent):
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()

    # No group: assigning partitions directly avoids tansu's slow group join.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    received: set[tuple[int, bytes, bytes]] = set()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        async with asyncio.timeout(15):
            while received != sent:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, messages in batches.items():
                    for m in messages:
                        assert m.key is not None and m.value is not None
                        received.add((tp.partition, m.key, m.value))
    finally:
        await consumer.stop()
    assert received == sent
