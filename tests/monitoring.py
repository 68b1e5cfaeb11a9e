"""App monitoring (Dify's statistics pages) for tests: conversations recorded in the event
store with the time they happened, and what the figures must be, by direct SQL over the
event store (`stored_events`), independent of the statistics projection and its queries.

`EVENT_STORE_ROWS` rebuilds Dify's tables (`conversations`, `messages`, `message_feedbacks`,
`workflow_runs`) from the stored events: a message is its `MessageCreated` with the usage of
how it ended, minus those retention expired and those of deleted conversations; a feedback
is the latest one given (a withdrawn one is no row); a run is its `WorkflowRunStarted` with
the tokens of its latest end. Over them, `expected_figures` runs each endpoint's query in
Dify's SQL shape (days in the account's timezone, `start`/`end` as Dify's parse_time_range
reads them) and shapes the rows as Dify answers them; `expected_windows` gives every
one-minute window's sums and members, to compare the read model with at its finest grain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commands.aggregate import Context
from commands.conversation.aggregates import Conversation
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowRun
from events.store import EventStore
from projections.progress import relay_lag
from projections.statistics.rules import Counters
from projections.statistics.tables import STATISTICS
from projections.versions import maintained_lags
from schemas.conversation import events as ev
from schemas.conversation.naming import end_user_id_for
from schemas.workflow import events as wev

# --- the write side, as the command handlers record it, at a chosen time -------------------


@dataclass(frozen=True)
class Asked:
    conversation_id: UUID
    message_id: UUID
    user: str  # the Service API's `user` who asked


def usage(prompt: int, completion: int, price: str, latency: float) -> dict[str, Any]:
    """Dify's usage of an answer, as the chat processor records it."""
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "total_price": price, "currency": "USD",
            "latency": latency}


class History:
    """Appends conversations of an app to the event store as the command handlers record
    them (one append per command), each event with the time it happened: what a past day
    left in the store."""

    def __init__(self, store: EventStore, tenant_id: UUID, app_id: UUID, mode: str = "chat"):
        self.store, self.tenant_id, self.app_id, self.mode = store, tenant_id, app_id, mode

    def _record(self, aggregate_id: UUID, at: datetime, decide: Any,
                kind: type[Conversation | WorkflowRun] = Conversation) -> None:
        command = uuid4()
        ctx = Context(tenant_id=self.tenant_id, actor_id=None, correlation_id=command,
                      causation_id=command)
        uow = UnitOfWork(self.store, ctx)
        decide(uow.get(kind, aggregate_id), ctx)
        self.store.append([replace(e, occurred_at=at) for e in uow.new_events()])

    def run(self, user: str, at: datetime, tokens: int, triggered_from: str = "app-run",
            end_user: bool = True, failed: bool = False) -> UUID:
        """A workflow run started at `at` by an end user (or, `end_user` False, an account
        named `user`), ended a second later with `tokens`."""
        run_id = uuid4()
        started = wev.WorkflowRunStarted(
            app_id=self.app_id, workflow_id=uuid4(), task_id=uuid4(), mode="workflow",
            triggered_from=triggered_from, user=user,
            end_user_id=end_user_id_for(self.app_id, user) if end_user else None,
            inputs={}, system={})
        ended = wev.WorkflowRunFailed(error="boom", elapsed_time=1.0, total_tokens=tokens) \
            if failed else wev.WorkflowRunSucceeded(outputs={}, elapsed_time=1.0,
                                                    total_tokens=tokens)
        self._record(run_id, at, lambda r, ctx: r.record(started, ctx), WorkflowRun)
        self._record(run_id, at + timedelta(seconds=1), lambda r, ctx: r.record(ended, ctx),
                     WorkflowRun)
        return run_id

    def expire_run(self, run_id: UUID, at: datetime) -> None:
        self._record(run_id, at, lambda r, ctx: r.expire(ctx), WorkflowRun)

    def ask(self, user: str, at: datetime, answered: dict[str, Any] | None,
            conversation_id: UUID | None = None, query: str = "How far is the river?") -> Asked:
        """A message (in a new conversation unless one is named), answered `latency`
        seconds later with `answered` as its usage (None: left unanswered)."""
        asked = Asked(conversation_id or uuid4(), uuid4(), user)
        end_user = end_user_id_for(self.app_id, user)

        def send(conversation: Conversation, ctx: Context) -> None:
            if conversation_id is None:
                conversation.start(ev.ConversationStarted(
                    app_id=self.app_id, end_user_id=end_user, user=user, mode=self.mode,
                    name=query, inputs={}), ctx)
            conversation.ask(ev.MessageCreated(
                message_id=asked.message_id, task_id=uuid4(), app_id=self.app_id,
                end_user_id=end_user, mode=self.mode, query=query, inputs={}, config={}), ctx)

        def answer(conversation: Conversation, ctx: Context) -> None:
            assert answered is not None
            conversation.finish(ev.MessageAnswered(message_id=asked.message_id,
                                                   answer="About a mile.", usage=answered), ctx)

        self._record(asked.conversation_id, at, send)
        if answered is not None:
            self._record(asked.conversation_id,
                         at + timedelta(seconds=float(answered["latency"])), answer)
        return asked

    def feedback(self, asked: Asked, rating: str | None, at: datetime) -> None:
        self._record(asked.conversation_id, at, lambda c, ctx: c.give_feedback(
            asked.message_id, rating, None, ctx))

    def expire(self, asked: Asked, at: datetime) -> None:
        self._record(asked.conversation_id, at, lambda c, ctx: c.expire([asked.message_id], ctx))

    def delete(self, asked: Asked, at: datetime) -> None:
        """Its conversation deleted, with every message of it."""
        self._record(asked.conversation_id, at, lambda c, ctx: c.delete(ctx))


# --- Dify's tables, from the event store ------------------------------------------------------

EVENT_STORE_ROWS = """
WITH ev AS (
    SELECT originator_id AS aggregate_id, notification_id AS position,
           split_part(topic, ':', 2) AS type, convert_from(state, 'UTF8')::jsonb AS s
    FROM stored_events
    WHERE split_part(topic, ':', 1) IN ('Conversation', 'WorkflowRun')
      AND NOT notification_id = ANY(CAST(:skipped AS bigint[]))
),
expired AS (
    SELECT jsonb_array_elements_text(s->'payload'->'message_ids')::uuid AS id
    FROM ev WHERE type = 'MessagesExpired'
),
ended AS (
    SELECT DISTINCT ON (id) (s->'payload'->>'message_id')::uuid AS id,
           s->'payload'->'usage' AS usage
    FROM ev WHERE type IN ('MessageAnswered', 'MessageStopped')
    ORDER BY id, position
),
deleted AS (
    SELECT aggregate_id AS id FROM ev WHERE type = 'ConversationDeleted'
),
conversations AS (
    SELECT aggregate_id AS id, (s->'payload'->>'app_id')::uuid AS app_id,
           (s->>'occurred_at')::timestamptz AS created_at
    FROM ev WHERE type = 'ConversationStarted' AND aggregate_id NOT IN (SELECT id FROM deleted)
),
messages AS (
    SELECT (m.s->'payload'->>'message_id')::uuid AS id,
           (m.s->'payload'->>'app_id')::uuid AS app_id,
           m.aggregate_id AS conversation_id,
           (m.s->'payload'->>'end_user_id')::uuid AS from_end_user_id,
           (m.s->>'occurred_at')::timestamptz AS created_at,
           coalesce((e.usage->>'prompt_tokens')::bigint, 0) AS message_tokens,
           coalesce((e.usage->>'completion_tokens')::bigint, 0) AS answer_tokens,
           coalesce((e.usage->>'total_price')::numeric(10, 7), 0) AS total_price,
           coalesce((e.usage->>'latency')::float, 0) AS provider_response_latency
    FROM ev m LEFT JOIN ended e ON e.id = (m.s->'payload'->>'message_id')::uuid
    WHERE m.type = 'MessageCreated'
      AND (m.s->'payload'->>'message_id')::uuid NOT IN (SELECT id FROM expired)
      AND m.aggregate_id NOT IN (SELECT id FROM deleted)
),
message_feedbacks AS (
    SELECT message_id AS id, message_id, rating FROM (
        SELECT DISTINCT ON (message_id) (s->'payload'->>'message_id')::uuid AS message_id,
               s->'payload'->>'rating' AS rating
        FROM ev WHERE type = 'MessageFeedbackGiven'
        ORDER BY message_id, position DESC) latest
    WHERE rating IS NOT NULL
),
run_ends AS (
    SELECT DISTINCT ON (aggregate_id) aggregate_id AS id,
           coalesce((s->'payload'->>'total_tokens')::bigint, 0) AS total_tokens
    FROM ev WHERE type IN ('WorkflowRunSucceeded', 'WorkflowRunFailed', 'WorkflowRunStopped')
    ORDER BY aggregate_id, position DESC
),
workflow_runs AS (
    SELECT r.aggregate_id AS id, (r.s->'payload'->>'app_id')::uuid AS app_id,
           r.s->'payload'->>'triggered_from' AS triggered_from,
           coalesce(r.s->'payload'->>'end_user_id', r.s->'payload'->>'user') AS created_by,
           (r.s->>'occurred_at')::timestamptz AS created_at,
           coalesce(e.total_tokens, 0) AS total_tokens
    FROM ev r LEFT JOIN run_ends e ON e.id = r.aggregate_id
    WHERE r.type = 'WorkflowRunStarted'
      AND r.aggregate_id NOT IN (SELECT aggregate_id FROM ev WHERE type = 'WorkflowRunExpired')
)
"""

DAY = "date({column} AT TIME ZONE :tz)"  # Dify's convert_datetime_to_date


@dataclass(frozen=True)
class Figure:
    """One statistics endpoint: Dify's query (`{range}` where its start/end conditions go,
    on `{column}`) and how a row is answered."""

    sql: str
    column: str
    answer: Any  # (row) -> dict


def _interactions(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


_MESSAGES = f"""SELECT {DAY.format(column="created_at")} AS date, {{select}}
FROM messages WHERE app_id = :app_id {{range}} GROUP BY date ORDER BY date"""
_RUNS = f"""SELECT {DAY.format(column="created_at")} AS date, {{select}}
FROM workflow_runs WHERE app_id = :app_id AND triggered_from = 'app-run' {{range}}
GROUP BY date ORDER BY date"""

FIGURES: dict[str, Figure] = {
    "statistics/daily-messages": Figure(
        _MESSAGES.format(select="COUNT(*) AS message_count", range="{range}"), "created_at",
        lambda r: {"date": str(r.date), "message_count": r.message_count}),
    "statistics/daily-conversations": Figure(
        _MESSAGES.format(select="COUNT(DISTINCT conversation_id) AS conversation_count",
                         range="{range}"), "created_at",
        lambda r: {"date": str(r.date), "conversation_count": r.conversation_count}),
    "statistics/daily-end-users": Figure(
        _MESSAGES.format(select="COUNT(DISTINCT from_end_user_id) AS terminal_count",
                         range="{range}"), "created_at",
        lambda r: {"date": str(r.date), "terminal_count": r.terminal_count}),
    "statistics/token-costs": Figure(
        _MESSAGES.format(select="SUM(message_tokens) + SUM(answer_tokens) AS token_count,"
                                " SUM(total_price) AS total_price", range="{range}"),
        "created_at",
        lambda r: {"date": str(r.date), "token_count": r.token_count,
                   "total_price": str(r.total_price), "currency": "USD"}),
    "statistics/average-session-interactions": Figure(f"""
        SELECT {DAY.format(column="c.created_at")} AS date,
               AVG(sub.message_count) AS interactions
        FROM (SELECT m.conversation_id, COUNT(m.id) AS message_count
              FROM conversations c JOIN messages m ON c.id = m.conversation_id
              WHERE c.app_id = :app_id {{range}}
              GROUP BY m.conversation_id) sub
        LEFT JOIN conversations c ON c.id = sub.conversation_id
        GROUP BY date ORDER BY date""", "c.created_at",
        lambda r: {"date": str(r.date), "interactions": _interactions(r.interactions)}),
    "statistics/user-satisfaction-rate": Figure(f"""
        SELECT {DAY.format(column="m.created_at")} AS date, COUNT(m.id) AS message_count,
               COUNT(mf.id) AS feedback_count
        FROM messages m LEFT JOIN message_feedbacks mf
             ON mf.message_id = m.id AND mf.rating = 'like'
        WHERE m.app_id = :app_id {{range}} GROUP BY date ORDER BY date""", "m.created_at",
        lambda r: {"date": str(r.date), "rate": round(
            r.feedback_count * 1000 / r.message_count if r.message_count > 0 else 0, 2)}),
    "statistics/average-response-time": Figure(
        _MESSAGES.format(select="AVG(provider_response_latency) AS latency", range="{range}"),
        "created_at", lambda r: {"date": str(r.date), "latency": round(r.latency * 1000, 4)}),
    "statistics/tokens-per-second": Figure(
        _MESSAGES.format(select="CASE WHEN SUM(provider_response_latency) = 0 THEN 0"
                                " ELSE SUM(answer_tokens) / SUM(provider_response_latency)"
                                " END AS tps", range="{range}"),
        "created_at", lambda r: {"date": str(r.date), "tps": round(r.tps, 4)}),
    "workflow/statistics/daily-conversations": Figure(
        _RUNS.format(select="COUNT(id) AS runs", range="{range}"), "created_at",
        lambda r: {"date": str(r.date), "runs": r.runs}),
    "workflow/statistics/daily-terminals": Figure(
        _RUNS.format(select="COUNT(DISTINCT created_by) AS terminal_count", range="{range}"),
        "created_at", lambda r: {"date": str(r.date), "terminal_count": r.terminal_count}),
    "workflow/statistics/token-costs": Figure(
        _RUNS.format(select="SUM(total_tokens) AS token_count", range="{range}"),
        "created_at", lambda r: {"date": str(r.date), "token_count": r.token_count}),
    "workflow/statistics/average-app-interactions": Figure(f"""
        SELECT AVG(sub.interactions) AS interactions, sub.date
        FROM (SELECT {DAY.format(column="c.created_at")} AS date, c.created_by,
                     COUNT(c.id) AS interactions
              FROM workflow_runs c
              WHERE c.app_id = :app_id AND c.triggered_from = 'app-run' {{range}}
              GROUP BY date, c.created_by) sub
        GROUP BY sub.date ORDER BY sub.date""", "c.created_at",
        lambda r: {"date": str(r.date), "interactions": _interactions(r.interactions)}),
}
CONVERSATION_FIGURES = [f for f in FIGURES if not f.startswith("workflow/")]
WORKFLOW_FIGURES = [f for f in FIGURES if f.startswith("workflow/")]


def time_range(start: str | None, end: str | None, tz: str) -> tuple[datetime | None,
                                                                      datetime | None]:
    """`YYYY-MM-DD HH:MM` in the account's timezone, in UTC (the later instant of an
    ambiguous or skipped local time, as Dify reads it)."""
    zone = ZoneInfo(tz)

    def utc(value: str | None) -> datetime | None:
        if not value:
            return None
        local = datetime.strptime(value, "%Y-%m-%d %H:%M")
        instants = [local.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)]
        return max(instants)

    return utc(start), utc(end)


async def expected_figures(conn: AsyncConnection, figure: str, app_id: UUID | str, tz: str,
                           start: str | None = None, end: str | None = None,
                           skipped: Iterable[int] = ()) -> list[dict[str, Any]]:
    """What `GET /console/api/apps/{app_id}/{figure}?start=&end=` must answer (`data`) for an
    account in `tz`; events at the positions `skipped` left out (an operator skipped them)."""
    spec = FIGURES[figure]
    since, until = time_range(start, end, tz)
    conditions = (f" AND {spec.column} >= :start" if since else "") + (
        f" AND {spec.column} < :end" if until else "")
    sql = EVENT_STORE_ROWS + spec.sql.replace("{range}", conditions)
    rows = await conn.execute(text(sql), {
        "tz": tz, "app_id": str(app_id), "start": since, "end": until,
        "skipped": list(skipped)})
    return [spec.answer(r) for r in rows]


# --- every window, from the event store and from the read model -------------------------------

Windows = dict[tuple[str, datetime], dict[str, Any]]  # (app, window) -> sums
Members = dict[tuple[str, datetime, str, str], int]  # (app, window, kind, member) -> rows

_MINUTE = "date_trunc('minute', {column} AT TIME ZONE 'UTC')"
_EXPECTED_WINDOWS = EVENT_STORE_ROWS + f"""
, message_windows AS (
    SELECT m.app_id, {_MINUTE.format(column="m.created_at")} AS window_start,
           count(*) AS messages, sum(m.message_tokens) AS message_tokens,
           sum(m.answer_tokens) AS answer_tokens,
           sum(round(m.total_price / 0.0000001))::bigint AS price_units,
           sum(round(m.provider_response_latency * 1000000))::bigint AS latency_us,
           count(mf.id) FILTER (WHERE mf.rating = 'like') AS likes
    FROM messages m LEFT JOIN message_feedbacks mf ON mf.message_id = m.id
    GROUP BY 1, 2
),
session_windows AS (
    SELECT c.app_id, {_MINUTE.format(column="c.created_at")} AS window_start,
           count(DISTINCT c.id) AS sessions, count(m.id) AS session_messages
    FROM conversations c JOIN messages m ON m.conversation_id = c.id
    GROUP BY 1, 2
),
run_windows AS (
    SELECT app_id, {_MINUTE.format(column="created_at")} AS window_start,
           count(*) AS runs, sum(total_tokens) AS run_tokens
    FROM workflow_runs WHERE triggered_from = 'app-run' GROUP BY 1, 2
)
SELECT app_id, window_start,
       coalesce(w.messages, 0) AS messages, coalesce(w.message_tokens, 0) AS message_tokens,
       coalesce(w.answer_tokens, 0) AS answer_tokens,
       coalesce(w.price_units, 0) AS price_units, coalesce(w.latency_us, 0) AS latency_us,
       coalesce(w.likes, 0) AS likes, coalesce(s.sessions, 0) AS sessions,
       coalesce(s.session_messages, 0) AS session_messages, coalesce(r.runs, 0) AS runs,
       coalesce(r.run_tokens, 0) AS run_tokens
FROM message_windows w
FULL JOIN session_windows s USING (app_id, window_start)
FULL JOIN run_windows r USING (app_id, window_start)
"""
_EXPECTED_MEMBERS = EVENT_STORE_ROWS + f"""
SELECT app_id, {_MINUTE.format(column="created_at")} AS window_start, 'conversation' AS kind,
       conversation_id::text AS member, count(*) AS count
FROM messages GROUP BY 1, 2, 3, 4
UNION ALL
SELECT app_id, {_MINUTE.format(column="created_at")}, 'end_user', from_end_user_id::text,
       count(*)
FROM messages GROUP BY 1, 2, 3, 4
UNION ALL
SELECT app_id, {_MINUTE.format(column="created_at")}, 'run_creator', created_by, count(*)
FROM workflow_runs WHERE triggered_from = 'app-run' GROUP BY 1, 2, 3, 4
"""
COUNTERS = tuple(f.name for f in fields(Counters))


def _sums(row: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(row[k]) for k in COUNTERS}


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


async def expected_windows(conn: AsyncConnection, skipped: Iterable[int] = (),
                           ) -> tuple[Windows, Members]:
    """Every non-empty window's sums and members, by SQL over the event store."""
    params = {"skipped": list(skipped)}
    windows = {(str(r["app_id"]), _naive_utc(r["window_start"])): _sums(r)
               for r in (await conn.execute(text(_EXPECTED_WINDOWS), params)).mappings()}
    members = {(str(r.app_id), _naive_utc(r.window_start), r.kind, r.member): int(r.count)
               for r in await conn.execute(text(_EXPECTED_MEMBERS), params)}
    return windows, members


async def projected_windows(conn: AsyncConnection, schema: str) -> tuple[Windows, Members]:
    """The same, as the statistics read model version `schema` holds them (windows and
    members at zero are nothing)."""
    rows = (await conn.execute(text(f'SELECT * FROM "{schema}".stat_windows'))).mappings()
    windows = {(str(r["app_id"]), _naive_utc(r["window_start"])): _sums(r) for r in rows}
    windows = {k: v for k, v in windows.items() if any(v.values())}
    members = {(str(r.app_id), _naive_utc(r.window_start), r.kind, r.member): int(r.count)
               for r in await conn.execute(text(
                   f'SELECT * FROM "{schema}".stat_members WHERE count <> 0'))}
    return windows, members



async def counted(engine: AsyncEngine, projections: Iterable[Any],
                  schema: str = f"{STATISTICS}_v1") -> bool:
    """Whether the statistics version `schema` has counted every stored event."""
    lags = await maintained_lags(engine, projections)
    return await relay_lag(engine) == 0 and lags.get(schema) == 0
