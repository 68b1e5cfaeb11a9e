"""The key-value contract (tests/contracts/kv.py) on Redis, the reference: the test Valkey,
each test under a prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from adapters.kv.redis import RedisKeyValueStore
from adapters.redis_client import redis_client
from tests.contracts.kv import KeyValueContract


class TestRedisKeyValueStore(KeyValueContract):
    @pytest.fixture
    async def kv(self, redis_url: str) -> AsyncIterator[RedisKeyValueStore]:
        store = RedisKeyValueStore(redis_client(redis_url, max_connections=8),
                                   prefix=f"kv{uuid.uuid4().hex[:8]}.")
        yield store
        await store.close()
