"""The counting rules of app monitoring (Dify's statistics pages), written once for every
runtime that aggregates them.

Each rule turns one event into changes of one-minute tumbling windows in UTC, per app:
counters (`Counters`) and member counts (who was seen in the window: conversations, end
users, a workflow's callers). One minute is the coarsest window that answers every account
timezone and Dify's minute-precise `start`/`end` exactly: a day in any timezone is a whole
number of windows, and so is any `YYYY-MM-DD HH:MM` range. Queries roll windows up into the
account's days (`projections/statistics/queries.py`).

A figure belongs to the window its row was created in, as in Dify's SQL: a message's tokens,
price, latency and like belong to the minute the message was asked even when the answer or
the feedback comes later; a conversation's interactions to the minute it started; a run's
tokens to the minute it started. So the rules keep facts (`MessageFact`, `ConversationFact`,
`RunFact`): what an event already contributed, so a later event of the same row moves the
figures by the difference, and expiry (retention) or a conversation's deletion takes them
back out.

Where the facts and windows are kept is the runtime's business (`Facts`): the statistics
projection keeps them in its read model (`projections/statistics/projectors.py`), another
runtime in its own state stores. The rules assume each event is applied once, in its
aggregate's order; providing that is the runtime's job too.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, get_args, get_type_hints
from uuid import UUID

from events.envelope import Envelope
from schemas.base import EventPayload
from schemas.conversation.events import (
    ConversationDeleted,
    ConversationStarted,
    MessageAnswered,
    MessageCreated,
    MessageFeedbackGiven,
    MessagesExpired,
    MessageStopped,
)
from schemas.workflow.events import (
    WorkflowRunExpired,
    WorkflowRunFailed,
    WorkflowRunStarted,
    WorkflowRunStopped,
    WorkflowRunSucceeded,
)

WINDOW = timedelta(minutes=1)
# Dify's messages.total_price is Numeric(10, 7): prices are counted in these units, exactly.
PRICE_UNIT = Decimal("0.0000001")
# Member kinds: whom a window saw, each with how many of its rows.
CONVERSATION, END_USER, RUN_CREATOR = "conversation", "end_user", "run_creator"
# Only these workflow runs count (Dify's WorkflowRunTriggeredFrom.APP_RUN): not debugging,
# webhook or schedule runs.
COUNTED_TRIGGER = "app-run"
LIKE = "like"


def window_of(at: datetime) -> datetime:
    """The start of the one-minute UTC window `at` falls in."""
    at = at.astimezone(UTC)
    return at.replace(second=0, microsecond=0)


def price_units(value: Any) -> int:
    """A Dify price (a decimal string) in units of 1e-7 USD."""
    try:
        return int((Decimal(str(value or "0")) / PRICE_UNIT).to_integral_value())
    except ArithmeticError:
        return 0


def microseconds(seconds: Any) -> int:
    """A latency in seconds (a usage's float) in whole microseconds."""
    try:
        return round(float(seconds or 0) * 1_000_000)
    except (TypeError, ValueError, OverflowError):
        return 0


@dataclass(frozen=True)
class Counters:
    """What a window adds up, per app. Every field is a sum, so windows roll up into days
    by addition."""

    messages: int = 0
    message_tokens: int = 0  # the prompts'
    answer_tokens: int = 0
    price_units: int = 0  # total_price in PRICE_UNITs
    # provider_response_latency summed, in microseconds: the usage records seconds to 6
    # places (workers/conversation/chat.py), so integers add up exactly in any order, and a
    # window a rebuild folds equals the one live events built
    latency_us: int = 0
    likes: int = 0  # messages whose feedback is "like"
    # counted in the window its conversation started in (average-session-interactions)
    sessions: int = 0  # conversations with at least one message
    session_messages: int = 0  # their messages
    runs: int = 0  # workflow runs (app-run)
    run_tokens: int = 0

    def __neg__(self) -> Counters:
        return Counters(**{f.name: -getattr(self, f.name) for f in fields(self)})

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def items(self) -> list[tuple[str, int]]:
        """The non-zero fields."""
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)]


COUNTER_NAMES = tuple(f.name for f in fields(Counters))


@dataclass(frozen=True)
class ConversationFact:
    conversation_id: UUID
    app_id: UUID
    window: datetime  # when it started
    # its counted messages' ids (as text, which any store keeps as it is), so its deletion
    # takes them out
    message_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class MessageFact:
    """What a message contributes to its window."""

    message_id: UUID
    app_id: UUID
    conversation_id: UUID
    end_user_id: UUID
    window: datetime  # when it was asked
    message_tokens: int = 0
    answer_tokens: int = 0
    price_units: int = 0
    latency_us: int = 0
    rating: str | None = None

    @property
    def counters(self) -> Counters:
        return Counters(messages=1, message_tokens=self.message_tokens,
                        answer_tokens=self.answer_tokens, price_units=self.price_units,
                        latency_us=self.latency_us, likes=int(self.rating == LIKE))


@dataclass(frozen=True)
class RunFact:
    run_id: UUID
    app_id: UUID
    window: datetime  # when it started
    creator: str  # Dify's workflow_runs.created_by: the end user, else the account
    tokens: int = 0


class Facts(Protocol):
    """Where a runtime keeps the facts and the windows the rules change."""

    async def conversation(self, conversation_id: UUID) -> ConversationFact | None: ...

    async def put_conversation(self, fact: ConversationFact) -> None: ...

    async def message(self, message_id: UUID) -> MessageFact | None: ...

    async def put_message(self, fact: MessageFact) -> None: ...

    async def drop_message(self, message_id: UUID) -> None: ...

    async def run(self, run_id: UUID) -> RunFact | None: ...

    async def put_run(self, fact: RunFact) -> None: ...

    async def drop_run(self, run_id: UUID) -> None: ...

    async def add(self, app_id: UUID, window: datetime, counters: Counters) -> None:
        """Add `counters` (some negative) to the app's window."""

    async def add_member(self, app_id: UUID, window: datetime, kind: str, member: str,
                         count: int) -> None:
        """Add `count` (+1 or -1) to how many rows of `member` the window holds; a member
        at 0 is no longer counted."""


Rule = Callable[[Envelope[Any], Facts], Awaitable[None]]


# --- conversations and messages ---------------------------------------------------------------


async def conversation_started(e: Envelope[ConversationStarted], facts: Facts) -> None:
    await facts.put_conversation(ConversationFact(e.aggregate_id, e.payload.app_id,
                                                  window_of(e.occurred_at)))


async def message_created(e: Envelope[MessageCreated], facts: Facts) -> None:
    p = e.payload
    window = window_of(e.occurred_at)
    conversation = (await facts.conversation(e.aggregate_id)
                    or ConversationFact(e.aggregate_id, p.app_id, window))
    message = MessageFact(p.message_id, p.app_id, e.aggregate_id, p.end_user_id, window)
    await facts.put_message(message)
    await facts.add(p.app_id, window, message.counters)
    await facts.add_member(p.app_id, window, CONVERSATION, str(e.aggregate_id), 1)
    await facts.add_member(p.app_id, window, END_USER, str(p.end_user_id), 1)
    await facts.add(p.app_id, conversation.window,
                    Counters(sessions=int(not conversation.message_ids), session_messages=1))
    await facts.put_conversation(replace(
        conversation, message_ids=(*conversation.message_ids, str(p.message_id))))


async def _usage_known(message_id: UUID, usage: Mapping[str, Any], facts: Facts) -> None:
    """The message's usage as its answer (or its stop) tells it: its window moves by the
    difference to what it held."""
    before = await facts.message(message_id)
    if before is None:  # not counted (asked before statistics began, or expired)
        return
    after = replace(before, message_tokens=int(usage.get("prompt_tokens") or 0),
                    answer_tokens=int(usage.get("completion_tokens") or 0),
                    price_units=price_units(usage.get("total_price")),
                    latency_us=microseconds(usage.get("latency")))
    await facts.put_message(after)
    await facts.add(before.app_id, before.window, _difference(after.counters, before.counters))


async def message_answered(e: Envelope[MessageAnswered], facts: Facts) -> None:
    await _usage_known(e.payload.message_id, e.payload.usage, facts)


async def message_stopped(e: Envelope[MessageStopped], facts: Facts) -> None:
    await _usage_known(e.payload.message_id, e.payload.usage, facts)


async def feedback_given(e: Envelope[MessageFeedbackGiven], facts: Facts) -> None:
    before = await facts.message(e.payload.message_id)
    if before is None:
        return
    after = replace(before, rating=e.payload.rating)
    await facts.put_message(after)
    await facts.add(before.app_id, before.window, _difference(after.counters, before.counters))


async def _taken_out(message_ids: Iterable[UUID], facts: Facts) -> None:
    """Messages whose rows Dify deletes: out of every figure."""
    for message_id in message_ids:
        message = await facts.message(message_id)
        if message is None:
            continue
        await facts.drop_message(message_id)
        await facts.add(message.app_id, message.window, -message.counters)
        await facts.add_member(message.app_id, message.window, CONVERSATION,
                               str(message.conversation_id), -1)
        await facts.add_member(message.app_id, message.window, END_USER,
                               str(message.end_user_id), -1)
        conversation = await facts.conversation(message.conversation_id)
        if conversation is not None and str(message_id) in conversation.message_ids:
            left = tuple(i for i in conversation.message_ids if i != str(message_id))
            await facts.add(conversation.app_id, conversation.window,
                            Counters(sessions=-int(not left), session_messages=-1))
            await facts.put_conversation(replace(conversation, message_ids=left))


async def messages_expired(e: Envelope[MessagesExpired], facts: Facts) -> None:
    """Retention removed them (as Dify's clean_messages deletes rows)."""
    await _taken_out(e.payload.message_ids, facts)


async def conversation_deleted(e: Envelope[ConversationDeleted], facts: Facts) -> None:
    """Its messages go with it (Dify deletes the conversation's rows, then its messages')."""
    conversation = await facts.conversation(e.aggregate_id)
    if conversation is not None:
        await _taken_out([UUID(i) for i in conversation.message_ids], facts)


# --- workflow runs ------------------------------------------------------------------------------


async def run_started(e: Envelope[WorkflowRunStarted], facts: Facts) -> None:
    p = e.payload
    if p.triggered_from != COUNTED_TRIGGER:
        return
    run = RunFact(e.aggregate_id, p.app_id, window_of(e.occurred_at),
                  str(p.end_user_id) if p.end_user_id else p.user)
    await facts.put_run(run)
    await facts.add(run.app_id, run.window, Counters(runs=1))
    await facts.add_member(run.app_id, run.window, RUN_CREATOR, run.creator, 1)


async def _run_ended(run_id: UUID, total_tokens: int, facts: Facts) -> None:
    run = await facts.run(run_id)
    if run is None:  # not counted
        return
    await facts.put_run(replace(run, tokens=total_tokens))
    await facts.add(run.app_id, run.window, Counters(run_tokens=total_tokens - run.tokens))


async def run_succeeded(e: Envelope[WorkflowRunSucceeded], facts: Facts) -> None:
    await _run_ended(e.aggregate_id, e.payload.total_tokens, facts)


async def run_failed(e: Envelope[WorkflowRunFailed], facts: Facts) -> None:
    await _run_ended(e.aggregate_id, e.payload.total_tokens, facts)


async def run_stopped(e: Envelope[WorkflowRunStopped], facts: Facts) -> None:
    await _run_ended(e.aggregate_id, e.payload.total_tokens, facts)


async def run_expired(e: Envelope[WorkflowRunExpired], facts: Facts) -> None:
    run = await facts.run(e.aggregate_id)
    if run is None:
        return
    await facts.drop_run(run.run_id)
    await facts.add(run.app_id, run.window, Counters(runs=-1, run_tokens=-run.tokens))
    await facts.add_member(run.app_id, run.window, RUN_CREATOR, run.creator, -1)


def _difference(after: Counters, before: Counters) -> Counters:
    return Counters(**{n: getattr(after, n) - getattr(before, n) for n in COUNTER_NAMES})


def _event_of(rule: Rule) -> type[EventPayload]:
    first = next(iter(inspect.signature(rule).parameters))
    (event,) = get_args(get_type_hints(rule)[first])
    return event  # type: ignore[no-any-return]


def _by_event(*rules: Rule) -> dict[type[EventPayload], Rule]:
    return {_event_of(r): r for r in rules}


CONVERSATION_RULES = _by_event(conversation_started, message_created, message_answered,
                               message_stopped, feedback_given, messages_expired,
                               conversation_deleted)
WORKFLOW_RULES = _by_event(run_started, run_succeeded, run_failed, run_stopped, run_expired)
RULES: Mapping[type[EventPayload], Rule] = {**CONVERSATION_RULES, **WORKFLOW_RULES}


async def tally(event: Envelope[Any], facts: Facts) -> None:
    """Apply the rule for the event's type (events without one change no figure)."""
    rule = RULES.get(type(event.payload))
    if rule is not None:
        await rule(event, facts)
