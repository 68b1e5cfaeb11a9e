"""App monitoring over three days and two timezones: the console's statistics answer Dify's
figures exactly. The two past days are in the event store as the command handlers recorded
them, each event with the time it happened (messages near midnight in either timezone,
answers, feedback given a day later, changed and withdrawn, a follow-up across midnight, an
expired message); today's messages, feedback and a conversation's deletion come through the
real Service API. What each endpoint must answer is computed by SQL over the event store in
Dify's SQL shape (`tests/monitoring.py`), for two accounts whose days start at different
instants, over the whole history and over ranges whose HH:MM edges fall between two messages
seconds apart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from schemas.platform.events import SetupCompleted
from tests.chat import Chat, app_with_key
from tests.harness import Node, eventually
from tests.invitations import join
from tests.monitoring import (
    CONVERSATION_FIGURES,
    Asked,
    History,
    counted,
    expected_figures,
    expected_windows,
    projected_windows,
    usage,
)

TIMEZONES = ("Asia/Kolkata", "America/Los_Angeles")  # UTC+5:30, UTC-8 (-7 in summer)
CHAT_ONLY = "statistics/average-session-interactions"
COMPLETION_ONLY = "statistics/average-response-time"


def minutes(day: datetime, hh_mm: str, seconds: int = 0) -> datetime:
    hours, mins = hh_mm.split(":")
    return day + timedelta(hours=int(hours), minutes=int(mins), seconds=seconds)


def local(at: datetime, tz: str) -> str:
    """`at` as an account in `tz` writes it in a range."""
    return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def midnight(day: datetime, tz: str) -> datetime:
    """When `day`'s date begins for an account in `tz`, in UTC."""
    return datetime.combine(day.date(), time(0), ZoneInfo(tz)).astimezone(UTC)


def record_past_days(chat: History, completion: History, today: datetime
                     ) -> tuple[dict[str, datetime], Asked, Asked]:
    """Two past days of both apps, recorded with the times they happened. Returns, per
    timezone, the midnight two messages fall either side of, a few seconds apart; a message
    liked then whose like is withdrawn today; one whose conversation is deleted today."""
    d2, d1 = today - timedelta(days=2), today - timedelta(days=1)
    edges = {tz: midnight(d1, tz) for tz in TIMEZONES}
    kolkata, los_angeles = edges["Asia/Kolkata"], edges["America/Los_Angeles"]
    # 02:10 UTC: the morning in Kolkata, the evening before in Los Angeles
    ann = chat.ask("ann", minutes(d2, "02:10"), usage(12, 30, "0.0000420", 1.5))
    bob = chat.ask("bob", kolkata - timedelta(seconds=40), usage(8, 16, "0.0000240", 0.75))
    chat.ask("bob", kolkata + timedelta(seconds=10), usage(20, 10, "0.0000300", 0.5),
             bob.conversation_id)  # its session started the day before, in Kolkata
    cy = chat.ask("cy", los_angeles - timedelta(seconds=30), usage(5, 5, "0.0000010", 0.25))
    late = chat.ask("ann", los_angeles + timedelta(seconds=5), usage(7, 21, "0.0000210", 1.0))
    chat.ask("dan", minutes(d1, "23:10"), None)  # never answered: counted, no tokens
    gone = chat.ask("eve", minutes(d1, "12:00"), usage(100, 100, "0.0100000", 3.0))
    # feedback comes later; it counts on the day the message was asked
    chat.feedback(ann, "like", minutes(d1, "14:00"))
    chat.feedback(bob, "like", minutes(d1, "14:00"))
    chat.feedback(cy, "like", minutes(d1, "14:00"))
    chat.feedback(cy, "dislike", minutes(d1, "15:00"))  # changed
    chat.feedback(late, "like", minutes(d1, "15:00"))
    chat.feedback(gone, "like", minutes(d1, "15:30"))
    chat.expire(gone, minutes(d1, "16:00"))  # retention: out of every figure
    deleted = chat.ask("hal", kolkata + timedelta(seconds=30), usage(9, 9, "0.0000090", 0.4))
    chat.feedback(deleted, "like", minutes(d1, "15:30"))
    for at, latency in ((minutes(d2, "02:10"), 0.8), (kolkata - timedelta(minutes=3), 2.25),
                        (los_angeles + timedelta(minutes=3), 1.2)):
        completion.ask("ann", at, usage(40, 60, "0.0000800", latency),
                       query="A haiku about rivers")
    return edges, bob, deleted


async def workspace_of(node: Node) -> UUID:
    events = await asyncio.to_thread(node.container.store.read_from, 0, 100)
    return next(e.payload.workspace_id for e in events if isinstance(e.payload, SetupCompleted))


async def caught_up(node: Node) -> bool:
    return await counted(node.container.engine, node.container.projections.values())


async def today_through_the_service_api(chat: Chat, completion: Chat, past: Asked,
                                        deleted: Asked) -> None:
    """Today's messages: a follow-up in a past conversation, new ones, feedback on a past
    message withdrawn and on today's given, a past conversation deleted."""
    follow_up = await chat.send("And today?", conversation_id=str(past.conversation_id),
                                user=past.user)
    assert follow_up.status_code == 200, follow_up.text
    for user in ("fay", "gus"):
        r = await chat.node.client.post("/v1/chat-messages", headers=chat.key, json={
            "inputs": {}, "query": f"Hello from {user}", "user": user,
            "response_mode": "blocking"})
        assert r.status_code == 200, r.text
    liked = await chat.node.client.post(f"/v1/messages/{r.json()['message_id']}/feedbacks",
                                        headers=chat.key, json={"rating": "like", "user": "gus"})
    assert liked.status_code == 200, liked.text
    withdrawn = await chat.node.client.post(
        f"/v1/messages/{past.message_id}/feedbacks", headers=chat.key,
        json={"rating": None, "user": past.user})
    assert withdrawn.status_code == 200, withdrawn.text
    gone = await chat.node.client.request(
        "DELETE", f"/v1/conversations/{deleted.conversation_id}", headers=chat.key,
        json={"user": deleted.user})
    assert gone.status_code == 204, gone.text
    written = await completion.send("", path="/v1/completion-messages",
                                    inputs={"topic": "tea"})
    assert written.status_code == 200, written.text


async def answered(chat: Chat, path: str, auth: dict[str, str],
                   **params: str) -> list[dict[str, Any]]:
    r = await chat.node.client.get(f"/console/api/apps/{chat.app_id}/{path}", headers=auth,
                                   params=params)
    assert r.status_code == 200, (path, r.text)
    body = r.json()
    assert list(body) == ["data"], body
    return body["data"]  # type: ignore[no-any-return]


@pytest.mark.settings(PROJECTION_WAIT_SECONDS=20)
async def test_three_days_in_two_timezones_give_difys_figures_exactly(chat: Chat) -> None:
    node, today = chat.node, datetime.now(UTC).replace(hour=0, minute=0, second=0,
                                                       microsecond=0)
    completion_id, completion_key = await app_with_key(node, chat.auth, mode="completion",
                                                       name="Writer")
    completion = Chat(node, chat.auth, completion_id, completion_key, chat.provider)
    await completion.configure(pre_prompt="Write a haiku about {{topic}}.", user_input_form=[
        {"text-input": {"label": "Topic", "variable": "topic", "required": True}}])
    accounts = {tz: await join(node, chat.auth, f"{tz.split('/')[1].lower()}@example.com",
                               "editor", timezone=tz) for tz in TIMEZONES}

    workspace = await workspace_of(node)
    edges, liked_before, deleted = await asyncio.to_thread(
        record_past_days, History(node.container.store, workspace, UUID(chat.app_id)),
        History(node.container.store, workspace, UUID(completion_id), mode="completion"),
        today)
    await eventually(lambda: caught_up(node), timeout=60)
    await today_through_the_service_api(chat, completion, liked_before, deleted)
    await eventually(lambda: caught_up(node), timeout=60)

    async with node.container.engine.connect() as conn:
        assert await projected_windows(conn, "statistics_v1") == await expected_windows(conn)
        for tz, auth in accounts.items():
            # each account's day starts at its own midnight, seconds between two messages
            edge = edges[tz]
            ranges: list[dict[str, str]] = [
                {},
                {"start": local(edge, tz)},  # from the account's midnight on
                {"end": local(edge, tz)},  # up to it, not including it
                {"start": local(edge - timedelta(minutes=1), tz),
                 "end": local(edge + timedelta(minutes=1), tz)},  # the minute either side
                {"start": local(today, tz), "end": local(today + timedelta(days=1), tz)},
            ]
            for app, figures in ((chat, [f for f in CONVERSATION_FIGURES
                                         if f != COMPLETION_ONLY]),
                                 (completion, [f for f in CONVERSATION_FIGURES
                                               if f != CHAT_ONLY])):
                for figure in figures:
                    for params in ranges:
                        expected = await expected_figures(conn, figure, app.app_id, tz,
                                                          params.get("start"), params.get("end"))
                        assert await answered(app, figure, auth, **params) == expected, (
                            tz, figure, params)
            # the edges cut: a day of the account's ends between the two messages
            days = await expected_figures(conn, "statistics/daily-messages", chat.app_id, tz,
                                          local(edge - timedelta(minutes=1), tz),
                                          local(edge + timedelta(minutes=1), tz))
            assert [d["message_count"] for d in days] == [1, 1], (tz, days)

        # the same history read from Kolkata and Los Angeles falls on different days
        by_zone = [await expected_figures(conn, "statistics/daily-messages", chat.app_id, tz)
                   for tz in TIMEZONES]
        assert by_zone[0] != by_zone[1]
        # 8 past (1 expired since, 1 deleted today), 3 today
        assert sum(d["message_count"] for d in by_zone[0]) == 9
