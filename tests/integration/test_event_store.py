"""The event store contract (tests/contracts/event_store.py) on Postgres."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import psycopg
import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from events.postgres_store import PostgresEventStore
from events.store import OUTCOME_CHANNEL, outcome_from_notice
from tests.contracts.event_store import EventStoreContract, history, outcome_for
from tests.harness import event_store, migrated


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, postgres: EmbeddedPostgres,
              fresh_database: Callable[..., str]) -> Iterator[PostgresEventStore]:
        database = fresh_database("evstore")
        migrated(postgres, database)
        with event_store(postgres, database, pool_size=2) as store:
            yield store


# A process that pauses holding the append lock: its own store's connection, the lock taken
# as an append takes it, then SIGSTOP to itself (a paused worker, a frozen VM).
PAUSED_IN_APPEND = """
import os, signal, sys
from events.postgres_store import EVENTS_TABLE, PostgresEventStore
from bootstrap import ASSEMBLY
host, port, user, dbname = sys.argv[1:]
store = PostgresEventStore(ASSEMBLY.event_types, host=host, port=int(port), user=user,
                           password="", dbname=dbname, pool_size=1)
try:
    with store.datastore.transaction(commit=True) as curs:
        curs.execute(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
        curs.execute("SELECT 1")
except Exception as exc:
    print("ended:", type(exc).__name__, flush=True)
    sys.exit(3)
"""


def test_a_process_paused_inside_an_append_does_not_stall_other_writers(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str]) -> None:
    """The append lock of a paused process is released when Postgres ends its idle
    transaction; other processes' appends go on, and the paused one's fails when it
    resumes, having stored nothing."""
    database = fresh_database("evpause")
    migrated(postgres, database)
    paused = subprocess.Popen([sys.executable, "-c", PAUSED_IN_APPEND, postgres.host,
                               str(postgres.port), postgres.user, database],
                              stdout=subprocess.PIPE, text=True)
    writer = ThreadPoolExecutor(1)
    try:
        assert paused.stdout is not None and paused.stdout.readline().strip() == "locked"
        with event_store(postgres, database, pool_size=1) as store:
            aggregate = uuid4()
            # Blocked behind the paused lock holder until Postgres ends its session.
            position = writer.submit(store.append, history(aggregate, [1])).result(timeout=120)
            paused.send_signal(signal.SIGCONT)
            assert paused.wait(timeout=60) == 3
            assert [e.aggregate_id for e in store.read_from(0, 10)] == [aggregate]
            assert position == store.max_position()
    finally:
        # Ending the paused process also frees a writer still blocked behind it.
        paused.send_signal(signal.SIGCONT)
        paused.kill()
        paused.wait()
        writer.shutdown()


def test_an_outcome_notice_says_what_is_stored_whichever_way_it_was_recorded(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str]) -> None:
    """The waiting gateway takes an outcome from its notice, without a query: the notice an
    append words in SQL and the one a rejection words in Python both say what was stored."""
    database = fresh_database("evnotice")
    migrated(postgres, database)
    accepted, rejected, aggregate = uuid4(), uuid4(), uuid4()
    with event_store(postgres, database, pool_size=1) as store, \
            psycopg.connect(postgres.dsn(database), autocommit=True) as listener:
        listener.execute(f"LISTEN {OUTCOME_CHANNEL}")
        store.append(history(aggregate, [1]), outcome_for(
            accepted, aggregate_id=aggregate, result={"id": str(aggregate), "name": "ü"}))
        store.record_without_events(outcome_for(
            rejected, status="rejected", error={"code": "invalid_param", "message": "no"}))
        notices = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
        assert len(notices) == 2
        for command_id, notice in zip((accepted, rejected), notices, strict=True):
            assert notice.startswith(f"{command_id} ")
            assert outcome_from_notice(notice) == store.outcome(command_id)
