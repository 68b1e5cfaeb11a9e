"""The event store contract (tests/contracts/event_store.py) on Postgres."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY
from events.postgres_store import PostgresEventStore
from migrations.runner import upgrade
from tests.contracts.event_store import EventStoreContract

    # --- what belongs to something ---------------------------------------------------------

    def test_events_naming_finds_the_events_of_a_type_whose_field_names_a_value(
        self, store: EventStore,
    ) -> None:
        ours, theirs = app_event(uuid4(), 1), app_event(uuid4(), 1)
        renamed = app_event(ours.aggregate_id, 2)
        store.append([ours, theirs, renamed])
        creator = ours.payload.created_by  # type: ignore[attr-defined]
        [found] = store.events_naming(["AppCreated"], "created_by", creator)
        assert (found.event_id, found.aggregate_id, found.position) == (
            ours.event_id, ours.aggregate_id, 1)
        assert store.events_naming(["AppUpdated"], "created_by", creator) == []
        assert store.events_naming(["AppCreated"], "created_by", uuid4()) == []


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
