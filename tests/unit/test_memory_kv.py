"""The key-value contract (tests/contracts/kv.py) on the in-memory adapter the unit tier's
node uses."""

from __future__ import annotations

import pytest

from adapters.kv.memory import MemoryKeyValueStore
from tests.contracts.kv import KeyValueContract


class TestMemoryKeyValueStore(KeyValueContract):
    @pytest.fixture
    def kv(self) -> MemoryKeyValueStore:
        return MemoryKeyValueStore()
