"""Crontab schedules: the fire times the scheduler's jobs and schedule triggers rely on."""

from datetime import UTC, datetime

import pytest

from workflow_graph.cron import Cron, CronError


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_next_and_latest_fire_times_in_utc() -> None:
    every_five = Cron("*/5 * * * *")
    assert every_five.next_after(at("2026-01-01T10:05:00")) == at("2026-01-01T10:10:00")
    assert every_five.latest_at_or_before(at("2026-01-01T10:05:00")) == at("2026-01-01T10:05:00")
    assert every_five.latest_at_or_before(at("2026-01-01T10:09:59")) == at("2026-01-01T10:05:00")


def test_a_zone_keeps_local_time_across_daylight_saving() -> None:
    nine_in_berlin = Cron("0 9 * * *", "Europe/Berlin")
    assert nine_in_berlin.next_after(at("2026-03-28T12:00:00")) == at("2026-03-29T07:00:00")
    assert nine_in_berlin.next_after(at("2026-03-27T12:00:00")) == at("2026-03-28T08:00:00")


def test_many_missed_ticks_make_one_due_run() -> None:
    daily = Cron("0 4 * * *")
    last = at("2026-01-01T04:00:00")
    assert not daily.due(last, at("2026-01-02T03:59:59"))
    assert daily.due(last, at("2026-01-05T12:00:00"))  # four ticks missed: due, once


@pytest.mark.parametrize(("expression", "zone"), [("* * *", "UTC"), ("61 * * * *", "UTC"),
                                                   ("* * * * *", "Mars/Olympus")])
def test_bad_schedules_are_refused(expression: str, zone: str) -> None:
    with pytest.raises(CronError):
        Cron(expression, zone)
