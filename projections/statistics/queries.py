"""App monitoring figures read from the statistics projection: its one-minute windows rolled up
into the days of the asking account's timezone (`date(window_start AT TIME ZONE :tz)`, as
Dify's statistics SQL groups rows by `created_at` in that zone), within Dify's `start`/`end`
range (`parse_time_range`). A range is minute-precise and a day in any zone starts on a whole
minute, so whole windows fall inside or outside: the figures are the ones Dify's SQL over
the rows would give. (Postgres: the zone database is the server's.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.statistics.rules import COUNTER_NAMES, Counters
from projections.statistics.tables import stat_members, stat_windows
from schemas.errors import InvalidTimeRange

MINUTE_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class TimeRange:
    timezone: str  # the account's: days are its days
    start: datetime | None = None  # UTC, inclusive
    end: datetime | None = None  # UTC, exclusive


def _local(at: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone`: one the clocks skip moves forward by the gap, one they
    repeat is its later occurrence (the later instant of the two `fold` gives)."""
    return max(at.replace(tzinfo=zone, fold=0), at.replace(tzinfo=zone, fold=1),
               key=datetime.timestamp)


def parse_time_range(start: str | None, end: str | None, timezone: str) -> TimeRange:
    """Dify's `start`/`end` (`YYYY-MM-DD HH:MM` in the account's timezone; empty is none)."""
    zone = ZoneInfo(timezone)

    def parse(value: str | None, label: str) -> datetime | None:
        if not value:
            return None
        try:
            at = datetime.strptime(value, MINUTE_FORMAT)
        except ValueError as exc:
            raise InvalidTimeRange(f"Invalid {label} time format: {exc}") from None
        try:
            return _local(at, zone).astimezone(UTC)
        except OverflowError:  # the first or last day of year 1 or 9999, shifted past it
            raise InvalidTimeRange(f"Invalid {label} time: {value} is out of range") from None

    first, last = parse(start, "start"), parse(end, "end")
    if first and last and first > last:
        raise InvalidTimeRange("start must be earlier than or equal to end")
    return TimeRange(timezone, first, last)


def _day(span: TimeRange, column: Any) -> ColumnElement[date]:
    return func.date(func.timezone(span.timezone, column))


def _within(span: TimeRange, column: Any) -> list[ColumnElement[bool]]:
    return [*([column >= span.start] if span.start else []),
            *([column < span.end] if span.end else [])]


async def daily_counters(engine: AsyncEngine, app_id: UUID,
                         span: TimeRange) -> dict[date, Counters]:
    """The app's windows summed per day of the range (days with any window, in order)."""
    w = stat_windows.c
    day = _day(span, w.window_start).label("day")
    query = (select(day, *[func.sum(w[name]).label(name) for name in COUNTER_NAMES])
             .where(w.app_id == app_id, *_within(span, w.window_start))
             .group_by(day).order_by(day))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return {r["day"]: Counters(**{n: int(r[n] or 0) for n in COUNTER_NAMES}) for r in rows}


async def daily_members(engine: AsyncEngine, app_id: UUID, kind: str,
                        span: TimeRange) -> dict[date, int]:
    """How many distinct members of `kind` (rules.CONVERSATION, END_USER, RUN_CREATOR) the
    app's windows saw per day of the range (days with any, in order)."""
    m = stat_members.c
    day = _day(span, m.window_start).label("day")
    query = (select(day, func.count(m.member.distinct()).label("members"))
             .where(m.app_id == app_id, m.kind == kind, m.count > 0,
                    *_within(span, m.window_start))
             .group_by(day).order_by(day))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {r.day: int(r.members) for r in rows}
