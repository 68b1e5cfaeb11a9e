"""The key-value and stream port's contract (adapters/kv/base.py): what every adapter must
do, as a mixin a backend's test class combines with its `kv` fixture (an empty store).
Subclasses: MemoryKeyValueStore in tests/unit/test_memory_kv.py, RedisKeyValueStore (on the
test Valkey) in tests/integration/test_kv.py.
"""

from __future__ import annotations

import asyncio

from adapters.kv.base import KeyValueStore


class KeyValueContract:
    """Behaviour every KeyValueStore must show. Subclasses provide the `kv` fixture."""

    async def test_values_set_only_if_new_taken_once_and_deleted(self, kv: KeyValueStore) -> None:
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

    async def test_many_values_read_at_once_in_the_order_asked(self, kv: KeyValueStore) -> None:
        await kv.set("first", "1")
        await kv.set("third", "3", ttl=60)
        assert await kv.get_many(["third", "second", "first"]) == ["3", None, "1"]
        assert await kv.get_many([]) == []

    async def test_a_value_is_renewed_or_deleted_only_by_its_holder(
            self, kv: KeyValueStore) -> None:
        await kv.set("lease", "ann", ttl=1)
        assert not await kv.expire_if("lease", "bob", 60)
        assert not await kv.delete_if("lease", "bob")
        assert await kv.get("lease") == "ann"
        assert await kv.expire_if("lease", "ann", 60)
        await asyncio.sleep(1.2)
        assert await kv.get("lease") == "ann"  # renewed past its first expiry
        assert await kv.delete_if("lease", "ann")
        assert await kv.get("lease") is None
        assert not await kv.expire_if("lease", "ann", 60)  # gone: nothing to renew
        assert not await kv.delete_if("lease", "ann")
        assert await kv.get("lease") is None  # and nothing created

    async def test_counters_and_values_expire(self, kv: KeyValueStore) -> None:
        await kv.set("token", "t", ttl=1)
        assert await kv.count(["a", "b"], window=1) == [1, 1]
        assert await kv.count(["a"], window=60) == [2]  # a running counter keeps its window
        await asyncio.sleep(1.2)
        assert await kv.get("token") is None
        assert await kv.count(["a", "b"], window=60) == [1, 1]

    async def test_uncount_never_goes_below_zero_nor_creates_a_counter(
            self, kv: KeyValueStore) -> None:
        await kv.uncount("ip")
        assert await kv.get("ip") is None
        assert await kv.count(["ip"], window=60) == [1]
        await kv.uncount("ip")
        await kv.uncount("ip")
        assert await kv.count(["ip"], window=60) == [1]

    async def test_fields(self, kv: KeyValueStore) -> None:
        await kv.set_field("last_used", "k1", "100")
        await kv.set_field("last_used", "k1", "200")
        assert await kv.get_fields("last_used", ["k1", "k2"]) == ["200", None]
        assert await kv.get_fields("last_used", []) == []

    async def test_streams_read_in_order_after_an_id(self, kv: KeyValueStore) -> None:
        assert (await kv.length("s"), await kv.newest("s", 1)) == (0, [])
        assert await kv.read("s", "0", count=10, block_ms=0) == []
        await kv.append("s", [b"one", b"two"], ttl=60)
        await kv.append("s", [b"three"], ttl=60)
        entries = await kv.read("s", "0", count=10, block_ms=0)
        assert [e for _, e in entries] == [b"one", b"two", b"three"]
        ids = [tuple(map(int, i.split("-"))) for i, _ in entries]
        assert ids == sorted(set(ids))
        after_first = await kv.read("s", entries[0][0], count=1, block_ms=0)
        assert after_first == [entries[1]]
        assert await kv.length("s") == 3
        assert await kv.newest("s", 2) == entries[:0:-1]  # newest first
        assert await kv.has("s", entries[1][0]) and not await kv.has("s", "1-0")

    async def test_a_stream_takes_writes_only_from_its_latest_claimant(
            self, kv: KeyValueStore) -> None:
        assert not await kv.append("s", [b"unclaimed"], ttl=60, fence=1)
        assert await kv.claim("s", 1, ttl=60) == 0
        assert await kv.append("s", [b"first"], ttl=60, fence=1)
        assert await kv.claim("s", 2, ttl=60) == 1  # a later attempt takes over
        assert not await kv.append("s", [b"stale"], ttl=60, fence=1)
        assert await kv.claim("s", 1, ttl=60) is None  # and cannot be taken back
        assert await kv.append("s", [b"second"], ttl=60, fence=2)
        assert await kv.claim("s", 2, ttl=60) == 2  # claiming again is harmless
        assert [e for _, e in await kv.read("s", "0", count=10, block_ms=0)] == [
            b"first", b"second"]

    async def test_a_blocked_read_wakes_on_append(self, kv: KeyValueStore) -> None:
        reader = asyncio.create_task(kv.read("s", "0", count=10, block_ms=5000))
        await asyncio.sleep(0.1)
        assert not reader.done()
        await kv.append("s", [b"late"], ttl=60)
        assert [e for _, e in await reader] == [b"late"]
        assert await kv.read("s", (await reader)[0][0], count=10, block_ms=50) == []
