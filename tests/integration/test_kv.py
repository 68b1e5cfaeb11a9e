"""The key-value and stream port's contract (adapters/kv/base.py), run against Redis (the
reference, on the test Valkey) and the in-memory adapter the unit tier uses: both must
behave alike for everything the gateway and workers rely on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from adapters.kv.base import KeyValueStore
from adapters.kv.memory import MemoryKeyValueStore
from adapters.kv.redis import RedisKeyValueStore


@pytest.fixture(params=["redis", "memory"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[KeyValueStore]:
    store: KeyValueStore
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        store = RedisKeyValueStore(url, prefix=f"kv{uuid.uuid4().hex[:8]}.")
    else:
        store = MemoryKeyValueStore()
    try:
        yield store
    finally:
        await store.close()


async def test_values_set_only_if_new_taken_once_and_deleted(kv: KeyValueStore) -> None:
    assert await kv.get("owner") is None
    assert await kv.set("owner", "ann", ttl=60, only_if_new=True)
    assert not await kv.set("owner", "bob", ttl=60, only_if_new=True)
    assert await kv.get("owner") == "ann"
    assert await kv.expire("owner", 60) and not await kv.expire("nobody", 60)
    assert await kv.take("owner") == "ann"
    assert await kv.take("owner") is None
    await kv.set("owner", "ann")
    await kv.delete("owner")
    assert await kv.get("owner") is None


async def test_counters_and_values_expire(kv: KeyValueStore) -> None:
    await kv.set("token", "t", ttl=1)
    assert await kv.count(["a", "b"], window=1) == [1, 1]
    assert await kv.count(["a"], window=60) == [2]  # a running counter keeps its window
    await asyncio.sleep(1.2)
    assert await kv.get("token") is None
    assert await kv.count(["a", "b"], window=60) == [1, 1]


async def test_uncount_never_goes_below_zero_nor_creates_a_counter(kv: KeyValueStore) -> None:
    await kv.uncount("ip")
    assert await kv.get("ip") is None
    assert await kv.count(["ip"], window=60) == [1]
    await kv.uncount("ip")
    await kv.uncount("ip")
    assert await kv.count(["ip"], window=60) == [1]


async def test_fields(kv: KeyValueStore) -> None:
    await kv.set_field("last_used", "k1", "100")
    await kv.set_field("last_used", "k1", "200")
    assert await kv.get_fields("last_used", ["k1", "k2"]) == ["200", None]
    assert await kv.get_fields("last_used", []) == []


async def test_streams_read_in_order_after_an_id(kv: KeyValueStore) -> None:
    assert (await kv.length("s"), await kv.last("s")) == (0, None)
    assert await kv.read("s", "0", count=10, block_ms=0) == []
    await kv.append("s", [b"one", b"two"], ttl=60)
    await kv.append("s", [b"three"], ttl=60)
    entries = await kv.read("s", "0", count=10, block_ms=0)
    assert [e for _, e in entries] == [b"one", b"two", b"three"]
    ids = [tuple(map(int, i.split("-"))) for i, _ in entries]
    assert ids == sorted(set(ids))
    after_first = await kv.read("s", entries[0][0], count=1, block_ms=0)
    assert after_first == [entries[1]]
    assert (await kv.length("s"), await kv.last("s")) == (3, b"three")


async def test_a_blocked_read_wakes_on_append(kv: KeyValueStore) -> None:
    reader = asyncio.create_task(kv.read("s", "0", count=10, block_ms=5000))
    await asyncio.sleep(0.1)
    assert not reader.done()
    await kv.append("s", [b"late"], ttl=60)
    assert [e for _, e in await reader] == [b"late"]
    assert await kv.read("s", (await reader)[0][0], count=10, block_ms=50) == []
