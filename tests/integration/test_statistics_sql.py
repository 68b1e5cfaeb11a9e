"""The two ways the tests know what app monitoring must say agree: Dify's tables rebuilt by
SQL over the event store (`tests/monitoring.py`) and the counting rules
(`projections/statistics/rules.py`) applied to the same stored events in order, over every
kind of later event (answers, feedback changed and withdrawn, a second message, expiry, a
conversation deleted; workflow runs of end users and accounts, failed, debugging, expired),
in every one-minute window; and Dify's daily figures by SQL take the account's timezone and
HH:MM edges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import build_engine
from projections.statistics.rules import tally
from tests.harness import event_store, migrate, node_settings
from tests.monitoring import History, expected_figures, expected_windows, usage
from tests.statistics import DictFacts


def as_rows(facts: DictFacts) -> tuple[dict[Any, Any], dict[Any, int]]:
    """The rules' windows and members keyed as `expected_windows` reads them back from SQL
    (the app as text, the window without its zone)."""
    windows, members = facts.counted()
    return ({(str(a), w.replace(tzinfo=None)): asdict(c) for (a, w), c in windows.items()},
            {(str(a), w.replace(tzinfo=None), k, m): n for (a, w, k, m), n in members.items()})


async def test_sql_over_the_event_store_agrees_with_the_rules_window_by_window(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str]) -> None:
    settings = node_settings(postgres, fresh_database("statsql"), "redis://127.0.0.1:1/0")
    migrate(settings)
    tenant, chat, other, flow = uuid4(), uuid4(), uuid4(), uuid4()
    day = datetime(2026, 3, 7, tzinfo=UTC)
    with event_store(postgres, settings.DB_DATABASE) as store:
        history, elsewhere = History(store, tenant, chat), History(store, tenant, other)
        a = history.ask("ann", day + timedelta(hours=18, minutes=20),
                        usage(10, 20, "0.0001500", 1.25))
        # a second message of the conversation, a minute and a day later: the session's
        # interactions stay in the window it started in
        b = history.ask("ann", day + timedelta(days=1, minutes=1), usage(5, 7, "0.0000070", 0.5),
                        conversation_id=a.conversation_id)
        c = history.ask("bob", day + timedelta(hours=18, minutes=20, seconds=30),
                        usage(3, 4, "0.0000002", 0.125))
        history.ask("cat", day + timedelta(hours=23, minutes=59), None)  # never answered
        d = history.ask("dan", day + timedelta(hours=2), usage(1, 1, "0.0000001", 0.01))
        elsewhere.ask("ann", day + timedelta(hours=18, minutes=20), usage(9, 9, "0.5", 2.0))
        history.feedback(a, "like", day + timedelta(days=2))  # late: counts where a was asked
        history.feedback(b, "like", day + timedelta(days=2))
        history.feedback(b, "dislike", day + timedelta(days=2, hours=1))  # changed
        history.feedback(c, "like", day + timedelta(days=2))
        history.feedback(c, None, day + timedelta(days=2, hours=1))  # withdrawn
        history.feedback(d, "like", day + timedelta(days=2))
        history.expire(d, day + timedelta(days=3))  # retention: out of every figure
        deleted = history.ask("fox", day + timedelta(hours=18, minutes=20, seconds=50),
                              usage(50, 50, "0.0000500", 0.5))
        history.ask("fox", day + timedelta(days=1, hours=3), usage(1, 1, "0", 0.1),
                    conversation_id=deleted.conversation_id)
        history.feedback(deleted, "like", day + timedelta(days=2))
        history.delete(deleted, day + timedelta(days=3))  # with all its messages
        workflow = History(store, tenant, flow)
        workflow.run("ann", day + timedelta(hours=1), 100)
        workflow.run("ann", day + timedelta(hours=2), 50, failed=True)  # still counted
        workflow.run("bob", day + timedelta(hours=23, minutes=59), 30)
        workflow.run("ann", day + timedelta(hours=3), 999, triggered_from="debugging")
        workflow.run("account-1", day + timedelta(hours=4), 7, end_user=False)
        workflow.expire_run(workflow.run("cat", day + timedelta(hours=5), 11),
                            day + timedelta(days=3))
        events = store.read_from(0, 1000)

    facts = DictFacts()
    for event in events:
        await tally(event, facts)
    engine = build_engine(settings)
    try:
        async with engine.connect() as conn:
            assert await expected_windows(conn) == as_rows(facts)
            windows, _ = await expected_windows(conn)
            ann = windows[(str(chat), datetime(2026, 3, 7, 18, 20))]
            assert (ann["messages"], ann["likes"], ann["sessions"], ann["session_messages"],
                    ann["price_units"]) == (2, 1, 2, 3, 1502)

            async def figure(name: str, tz: str, start: str | None = None,
                             end: str | None = None) -> list[dict[str, Any]]:
                return await expected_figures(conn, f"statistics/{name}", chat, tz, start, end)

            # 18:20 UTC is 23:50 in Kolkata; 23:59 UTC the 8th's 05:29, 00:01 UTC its 05:31
            assert await figure("daily-messages", "Asia/Kolkata") == [
                {"date": "2026-03-07", "message_count": 2},
                {"date": "2026-03-08", "message_count": 2}]
            # in Los Angeles (UTC-8) 18:20 UTC is 10:20 and 00:01 UTC the 7th's 16:01
            assert await figure("daily-messages", "America/Los_Angeles") == [
                {"date": "2026-03-07", "message_count": 4}]
            assert await figure("daily-messages", "Asia/Kolkata", "2026-03-07 23:50",
                                "2026-03-08 05:31") == [{"date": "2026-03-07", "message_count": 2},
                                                        {"date": "2026-03-08", "message_count": 1}]
            assert await figure("daily-messages", "Asia/Kolkata", "2026-03-07 23:51",
                                "2026-03-08 05:32") == [{"date": "2026-03-08", "message_count": 2}]
            assert await figure("token-costs", "UTC") == [
                {"date": "2026-03-07", "token_count": 37, "total_price": "0.0001502",
                 "currency": "USD"},
                {"date": "2026-03-08", "token_count": 12, "total_price": "0.0000070",
                 "currency": "USD"}]
            assert await figure("average-session-interactions", "UTC") == [
                {"date": "2026-03-07", "interactions": 1.33}]
            assert await figure("user-satisfaction-rate", "UTC") == [
                {"date": "2026-03-07", "rate": 333.33}, {"date": "2026-03-08", "rate": 0}]
            assert await figure("tokens-per-second", "UTC", "2026-03-08 00:00") == [
                {"date": "2026-03-08", "tps": 14.0}]
            flows = {name: await expected_figures(conn, f"workflow/statistics/{name}", flow,
                                                  "Asia/Kolkata")
                     for name in ("daily-conversations", "daily-terminals", "token-costs",
                                  "average-app-interactions")}
            # bob's run at 23:59 UTC is the 8th's 05:29 in Kolkata
            assert flows == {
                "daily-conversations": [{"date": "2026-03-07", "runs": 3},
                                        {"date": "2026-03-08", "runs": 1}],
                "daily-terminals": [{"date": "2026-03-07", "terminal_count": 2},
                                    {"date": "2026-03-08", "terminal_count": 1}],
                "token-costs": [{"date": "2026-03-07", "token_count": 157},
                                {"date": "2026-03-08", "token_count": 30}],
                "average-app-interactions": [{"date": "2026-03-07", "interactions": 1.5},
                                             {"date": "2026-03-08", "interactions": 1.0}]}
            stored = (await conn.execute(text("SELECT count(*) FROM stored_events"))).scalar()
            assert stored == len(events)
    finally:
        await engine.dispose()
