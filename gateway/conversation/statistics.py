"""Console monitoring of an app's messages (Dify's `/apps/{app_id}/statistics/…`): per day of
the account's timezone within `start`/`end`, answered from the statistics projection
(`projections/statistics/`) with Dify's shapes and rounding. A day is listed when it has a
message (Dify groups message rows; average-session-interactions groups conversations with
one)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request

from gateway.auth import AppReader, ConsoleUser
from gateway.statistics import RangeEdge, Statistics, average, listed, statistics_of
from projections.statistics import queries
from projections.statistics.rules import CONVERSATION, END_USER, PRICE_UNIT, Counters

router = APIRouter(prefix="/console/api/apps/{app_id}/statistics")

CHAT_MODES = ("chat", "agent-chat", "advanced-chat")


async def _message_days(s: Statistics) -> dict[date, Counters]:
    counted = await queries.daily_counters(s.engine, s.app_id, s.span)
    return {day: c for day, c in counted.items() if c.messages > 0}


async def _members(s: Statistics, kind: str, field: str) -> dict[str, Any]:
    counted = await queries.daily_members(s.engine, s.app_id, kind, s.span)
    return listed([{"date": str(day), field: n} for day, n in counted.items()])


@router.get("/daily-messages")
async def daily_messages(request: Request, app_id: str, start: RangeEdge = None,
                         end: RangeEdge = None,
                         user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    return listed([{"date": str(day), "message_count": c.messages}
                   for day, c in (await _message_days(s)).items()])


@router.get("/daily-conversations")
async def daily_conversations(request: Request, app_id: str, start: RangeEdge = None,
                              end: RangeEdge = None,
                              user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    return await _members(s, CONVERSATION, "conversation_count")


@router.get("/daily-end-users")
async def daily_end_users(request: Request, app_id: str, start: RangeEdge = None,
                          end: RangeEdge = None,
                          user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    return await _members(s, END_USER, "terminal_count")


@router.get("/token-costs")
async def token_costs(request: Request, app_id: str, start: RangeEdge = None,
                      end: RangeEdge = None, user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    # total_price as Dify's JSON shows SUM of a Numeric(10, 7): a decimal string of scale 7
    return listed([{"date": str(day), "token_count": c.message_tokens + c.answer_tokens,
                    "total_price": str(c.price_units * PRICE_UNIT),
                    "currency": "USD"}
                   for day, c in (await _message_days(s)).items()])


@router.get("/average-session-interactions")
async def average_session_interactions(request: Request, app_id: str, start: RangeEdge = None,
                                       end: RangeEdge = None,
                                       user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end, CHAT_MODES)
    counted = await queries.daily_counters(s.engine, s.app_id, s.span)
    return listed([{"date": str(day), "interactions": average(c.session_messages, c.sessions)}
                   for day, c in counted.items() if c.sessions > 0])


@router.get("/user-satisfaction-rate")
async def user_satisfaction_rate(request: Request, app_id: str, start: RangeEdge = None,
                                 end: RangeEdge = None,
                                 user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    # likes per thousand messages
    return listed([{"date": str(day), "rate": round(c.likes * 1000 / c.messages, 2)}
                   for day, c in (await _message_days(s)).items()])


@router.get("/average-response-time")
async def average_response_time(request: Request, app_id: str, start: RangeEdge = None,
                                end: RangeEdge = None,
                                user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end, ("completion",))
    # Dify's order of operations (the average in seconds, then milliseconds), so a figure
    # on a rounding edge rounds the same way
    return listed([{"date": str(day),
                    "latency": round(c.latency_us / 1_000_000 / c.messages * 1000, 4)}
                   for day, c in (await _message_days(s)).items()])


@router.get("/tokens-per-second")
async def tokens_per_second(request: Request, app_id: str, start: RangeEdge = None,
                            end: RangeEdge = None,
                            user: ConsoleUser = AppReader) -> dict[str, Any]:
    s = await statistics_of(request, user, app_id, start, end)
    return listed([{"date": str(day),
                    "tps": round(c.answer_tokens / (c.latency_us / 1_000_000), 4)
                    if c.latency_us else 0}
                   for day, c in (await _message_days(s)).items()])
