"""Crontab schedules: the scheduler's jobs (Celery beat's `crontab(...)` entries) and
workflow schedule triggers (a cron expression in the workflow's time zone).

Pure: the next and the latest fire time of a 5-field expression, in UTC, computed in the
schedule's zone (so `0 9 * * *` in Europe/Berlin is 09:00 there across DST changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


class CronError(ValueError):
    """An expression or a time zone that names no schedule."""


@dataclass(frozen=True)
class Cron:
    expression: str  # minute hour day-of-month month day-of-week
    timezone: str = "UTC"  # an IANA zone name

    def __post_init__(self) -> None:
        if len(self.expression.split()) != 5 or not croniter.is_valid(self.expression):
            raise CronError(f"not a 5-field cron expression: {self.expression!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CronError(f"unknown time zone: {self.timezone!r}") from exc

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (an aware datetime), in UTC."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return croniter(self.expression, local).get_next(datetime).astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last fire time at or before `moment`, in UTC."""
        following = self.next_after(moment)
        local = following.astimezone(ZoneInfo(self.timezone))
        return croniter(self.expression, local).get_prev(datetime).astimezone(UTC)

    def due(self, last: datetime, now: datetime) -> bool:
        """Whether a tick fell after `last` and by `now`: however many did, one run is due."""
        return self.next_after(last) <= now
