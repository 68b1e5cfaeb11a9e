"""The counting rules of app monitoring (projections/statistics/rules.py) against Dify's SQL
over the rows the same events leave, and the statistics projection's projectors (the rules'
`Facts` over SQL) against the rules on a dict.

Dify counts rows: a message's figures in the minute it was asked whatever came later (its
answer, its feedback), a conversation's interactions in the minute it started, a run's tokens
in the minute it started; rows retention deleted count no more. `tests.statistics.DifyRows`
keeps those rows as Dify's tables would and counts them per minute the way its SQL does; the
rules must give the same windows for random histories.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from bootstrap import ASSEMBLY
from events.envelope import Envelope
from projections.statistics import tables
from projections.statistics.queries import TimeRange, parse_time_range
from projections.statistics.rules import Counters, microseconds, price_units, tally, window_of
from projections.tables import READ
from schemas.base import EventPayload
from schemas.conversation import events as conv
from schemas.errors import InvalidTimeRange
from tests.statistics import DictFacts, History, Members, Windows


@pytest.mark.parametrize("seed", range(12))
async def test_the_rules_count_what_difys_sql_counts_over_the_rows_left(seed: int) -> None:
    history = History(seed).play(150)
    facts = DictFacts()
    for event in history.events:
        await tally(event, facts)
    assert facts.counted() == history.rows.counted()


async def test_a_late_answer_and_feedback_count_in_the_minute_the_message_was_asked() -> None:
    history = History(0)
    history.ask(None)
    asked = history.at
    (message,) = history.rows.messages
    history.at += timedelta(minutes=5)
    history.answer(message, stopped=False)
    history.at += timedelta(hours=30)  # the next day, in any timezone
    history.emit("Conversation", history.rows.messages[message]["conversation"],
                 conv.MessageFeedbackGiven(message_id=message, rating="like"))
    facts = DictFacts()
    for event in history.events:
        await tally(event, facts)
    windows, _ = facts.counted()
    row = history.rows.messages[message]
    assert windows == {(history.chat_app, window_of(asked)): Counters(
        messages=1, message_tokens=row["prompt"], answer_tokens=row["answer"],
        price_units=row["price"], latency_us=row["latency"], likes=1, sessions=1,
        session_messages=1)}


async def test_expiry_takes_a_conversation_out_of_the_sessions_with_its_last_message() -> None:
    history = History(1)
    history.ask(None)
    conversation = next(iter(history.rows.conversations))
    history.ask(conversation)
    history.emit("Conversation", conversation,
                 conv.MessagesExpired(message_ids=list(history.rows.messages)))
    facts = DictFacts()
    for event in history.events:
        await tally(event, facts)
    assert facts.counted() == ({}, {})


def test_usage_values_are_counted_exactly_or_as_nothing() -> None:
    assert price_units("0.0000460") == 460 and price_units("12.3456789") == 123456789
    assert price_units("not a price") == 0 and price_units(None) == 0
    assert microseconds(1.234567) == 1234567 and microseconds(0.1 + 0.2) == 300000
    assert microseconds("nan") == 0 and microseconds(None) == 0


async def _folded_in_sqlite(events: list[Envelope[EventPayload]],
                            batch: int) -> tuple[Windows, Members]:
    """The events applied by the statistics projection's projectors to its tables in SQLite
    (as a rebuild folds them), `batch` at a time, each batch in its own transaction as the
    runner applies them."""
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool).execution_options(
        schema_translate_map={READ: None})
    projection = ASSEMBLY.projections[tables.STATISTICS]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.metadata.create_all)
        assert all(projection.follows(type(e.payload)) for e in events)
        for first in range(0, len(events), batch):
            async with engine.begin() as conn:
                await projection.apply(conn, events[first:first + batch])
        async with engine.connect() as conn:
            windows = (await conn.execute(select(tables.stat_windows))).mappings().all()
            members = (await conn.execute(select(tables.stat_members))).mappings().all()
    finally:
        await engine.dispose()
    names = [f.name for f in fields(Counters)]
    utc = {r["window_start"]: r["window_start"].replace(tzinfo=UTC) for r in windows}
    counted = {(r["app_id"], utc[r["window_start"]]): Counters(**{n: r[n] for n in names})
               for r in windows}
    return ({k: c for k, c in counted.items() if c},
            {(r["app_id"], r["window_start"].replace(tzinfo=UTC), r["kind"], r["member"]):
             r["count"] for r in members})


@pytest.mark.parametrize(("seed", "batch"), [(0, 1), (1, 7), (2, 500)])
async def test_the_projectors_keep_in_sql_what_the_rules_keep_in_a_dict(seed: int,
                                                                        batch: int) -> None:
    history = History(100 + seed).play(120)
    facts = DictFacts()
    for event in history.events:
        await tally(event, facts)
    assert await _folded_in_sqlite(history.events, batch) == facts.counted()


@pytest.mark.parametrize(("start", "end", "zone", "expected"), [
    ("2026-03-01 09:15", "2026-03-02 00:00", "Asia/Kolkata",
     (datetime(2026, 3, 1, 3, 45, tzinfo=UTC), datetime(2026, 3, 1, 18, 30, tzinfo=UTC))),
    # a time the clocks skip moves forward by the gap; one they repeat is the later one
    ("2026-03-29 02:30", "2026-10-25 02:30", "Europe/Berlin",
     (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC))),
    ("", None, "UTC", (None, None)),
    ("2026-03-01 10:00", "2026-03-01 10:00", "UTC",
     (datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 10, tzinfo=UTC))),
])
def test_a_range_is_read_in_the_accounts_timezone_as_dify_reads_it(
        start: str, end: str | None, zone: str,
        expected: tuple[datetime | None, datetime | None]) -> None:
    assert parse_time_range(start, end, zone) == TimeRange(zone, *expected)


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2026-03-01", None, "Invalid start time format: time data '2026-03-01' does not match "
     "format '%Y-%m-%d %H:%M'"),
    (None, "2026-02-30 10:00", "Invalid end time format: day is out of range for month"),
    ("2026-03-01 10:01", "2026-03-01 10:00", "start must be earlier than or equal to end"),
    ("0001-01-01 00:00", None, "Invalid start time: 0001-01-01 00:00 is out of range"),
])
def test_a_bad_range_is_refused_with_difys_reason(start: str | None, end: str | None,
                                                  message: str) -> None:
    with pytest.raises(InvalidTimeRange) as refused:
        parse_time_range(start, end, "Asia/Kolkata")
    assert refused.value.to_dict() == {"code": "bad_request", "status": 400, "message": message}
