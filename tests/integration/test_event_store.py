"""The event store contract (tests/contracts/event_store.py) on Postgres."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY
from events.postgres_store import PostgresEventStore
from migrations.runner import upgrade
from tests.contracts.event_store import EventStoreContract


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, postgres: EmbeddedPostgres,
              fresh_database: Callable[..., str]) -> Iterator[PostgresEventStore]:
        database = fresh_database("evstore")
        upgrade(postgres.dsn(database).replace("postgresql://", "postgresql+psycopg://", 1))
        store = PostgresEventStore(ASSEMBLY.event_types, host=postgres.host,
                                   port=postgres.port, user=postgres.user, password="",
                                   dbname=database, pool_size=2)
        yield store
        store.close()
