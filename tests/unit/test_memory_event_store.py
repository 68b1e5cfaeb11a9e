"""The event store contract (tests/contracts/event_store.py) on the in-memory store."""

from __future__ import annotations

import pytest

from events.memory_store import InMemoryEventStore
from tests.contracts.event_store import EventStoreContract


class TestInMemoryEventStore(EventStoreContract):
    """The unit tier's store: no server, so no server fixtures."""

    @pytest.fixture
    def store(self) -> InMemoryEventStore:
        return InMemoryEventStore()
