"""Console monitoring of an app's workflow runs (Dify's `/apps/{app_id}/workflow/statistics/…`):
runs the Service API started (Dify's `app-run` trigger) per day of the account's timezone
within `start`/`end`, from the statistics projection, in Dify's shapes. A day is listed when
a run started in it."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request

from gateway.auth import AppReader, ConsoleUser
from gateway.statistics import RangeEdge, Statistics, average, listed, statistics_of
from projections.statistics import queries
from projections.statistics.rules import RUN_CREATOR, Counters

router = APIRouter(prefix="/console/api/apps/{app_id}/workflow/statistics")


async def _run_days(s: Statistics) -> dict[date, Counters]:
    counted = await queries.daily_counters(s.engine, s.app_id, s.span)
    return {day: c for day, c in counted.items() if c.runs > 0}


@router.get("/daily-conversations")
async def daily_runs(request: Request, app_id: str, start: RangeEdge = None,
                     end: RangeEdge = None, user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    return listed([{"date": str(day), "runs": c.runs} for day, c in (await _run_days(s)).items()])


@router.get("/daily-terminals")
async def daily_terminals(request: Request, app_id: str, start: RangeEdge = None,
                          end: RangeEdge = None,
                          user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    counted = await queries.daily_members(s.engine, s.app_id, RUN_CREATOR, s.span)
    return listed([{"date": str(day), "terminal_count": n} for day, n in counted.items()])


@router.get("/token-costs")
async def token_costs(request: Request, app_id: str, start: RangeEdge = None,
                      end: RangeEdge = None, user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    return listed([{"date": str(day), "token_count": c.run_tokens}
                   for day, c in (await _run_days(s)).items()])


@router.get("/average-app-interactions")
async def average_app_interactions(request: Request, app_id: str, start: RangeEdge = None,
                                   end: RangeEdge = None,
                                   user: ConsoleUser = AppReader) -> dict[str, Any]:
    """Runs per caller, averaged over the day's callers."""
    s = await statistics_of(request, user, app_id, start, end, ("workflow",))
    runs = await _run_days(s)
    callers = await queries.daily_members(s.engine, s.app_id, RUN_CREATOR, s.span)
    return listed([{"date": str(day), "interactions": average(c.runs, callers[day])}
                   for day, c in runs.items() if callers.get(day)])
