"""The statistics queries on Postgres: random histories applied by the projection runner to
statistics_v1 (each event delivered twice: it counts once), then rolled up into the days of
timezones with a DST change, a half-hour offset and none, over ranges with minute edges:
the figures are what Dify's SQL gives over the rows the history leaves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY
from events.memory_store import InMemoryEventStore
from projections.layout import version_engine
from projections.runner import ProjectionRunner
from projections.statistics.queries import TimeRange, daily_counters, daily_members
from projections.statistics.rules import CONVERSATION, END_USER, RUN_CREATOR
from projections.statistics.tables import STATISTICS
from tests.harness import migrated
from tests.statistics import History

ZONES = ("UTC", "Europe/Berlin", "Asia/Kolkata", "America/Los_Angeles")
# (start, end) in UTC; the history runs from 2026-03-28 22:30 UTC for about three days,
# across Berlin's change to summer time (2026-03-29 01:00 UTC)
RANGES = [(None, None),
          (datetime(2026, 3, 29, 0, 47, tzinfo=UTC), None),
          (None, datetime(2026, 3, 30, 18, 31, tzinfo=UTC)),
          (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 30, 22, 59, tzinfo=UTC))]


async def test_days_in_any_timezone_and_range_are_difys(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str]) -> None:
    database = fresh_database("stat")
    url = migrated(postgres, database).replace("+psycopg", "+asyncpg", 1)
    database_engine = create_async_engine(url)
    engine = version_engine(database_engine, "statistics_v1", 1)
    history = History(7, pace=1500).play(500)
    runner = ProjectionRunner(engine, ASSEMBLY.projections[STATISTICS], InMemoryEventStore(),
                              "statistics_v1")
    try:
        for event in history.events:
            assert await runner.apply(event)
            assert not await runner.apply(event)  # redelivered: counted once
        assert history.at > datetime(2026, 3, 31, tzinfo=UTC)
        for zone in ZONES:
            for start, end in RANGES:
                span = TimeRange(zone, start, end)
                sums, members = history.rows.daily(history.chat_app, zone, start, end)
                counted = await daily_counters(engine, history.chat_app, span)
                assert {d: c for d, c in counted.items() if c} == sums, (zone, start, end)
                for kind in (CONVERSATION, END_USER):
                    assert await daily_members(engine, history.chat_app, kind, span) \
                        == members[kind], (zone, start, end, kind)
                sums, members = history.rows.daily(history.flow_app, zone, start, end)
                counted = await daily_counters(engine, history.flow_app, span)
                assert {d: c for d, c in counted.items() if c} == sums, (zone, start, end)
                assert await daily_members(engine, history.flow_app, RUN_CREATOR, span) \
                    == members[RUN_CREATOR], (zone, start, end)
    finally:
        await database_engine.dispose()


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Asia/Kolkata"])
async def test_the_app_asked_about_is_the_only_one_counted(
        zone: str, postgres: EmbeddedPostgres, fresh_database: Callable[..., str]) -> None:
    database = fresh_database("stat")
    url = migrated(postgres, database).replace("+psycopg", "+asyncpg", 1)
    database_engine = create_async_engine(url)
    engine = version_engine(database_engine, "statistics_v1", 1)
    one, other = History(1, pace=600).play(80), History(2, pace=600).play(80)
    runner = ProjectionRunner(engine, ASSEMBLY.projections[STATISTICS], InMemoryEventStore(),
                              "statistics_v1")
    try:
        await runner.apply_many(one.events)
        await runner.apply_many(other.events)
        sums, _ = one.rows.daily(one.chat_app, zone, None, None)
        counted = await daily_counters(engine, one.chat_app, TimeRange(zone))
        assert {d: c for d, c in counted.items() if c} == sums
    finally:
        await database_engine.dispose()
