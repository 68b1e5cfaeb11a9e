"""The event store contract (tests/contracts/event_store.py) on Postgres."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from events.postgres_store import PostgresEventStore
from tests.contracts.event_store import EventStoreContract
from tests.harness import event_store, migrated


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, postgres: EmbeddedPostgres,
              fresh_database: Callable[..., str]) -> Iterator[PostgresEventStore]:
        database = fresh_database("evstore")
        migrated(postgres, database)
        with event_store(postgres, database, pool_size=2) as store:
            yield store
