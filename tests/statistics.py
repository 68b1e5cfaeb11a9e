"""Random event histories of app monitoring and the rows they leave in Dify's tables, for
the tests of the statistics projection (tests/unit/test_statistics.py, the queries' in
tests/integration): the rules on a dict (`DictFacts`) and Dify's rows counted as its SQL
counts them (`DifyRows`)."""

from __future__ import annotations

import random
from collections import Counter as Tally
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from events.envelope import Envelope
from projections.statistics.rules import (
    CONVERSATION,
    END_USER,
    RUN_CREATOR,
    ConversationFact,
    Counters,
    MessageFact,
    RunFact,
    microseconds,
    price_units,
    window_of,
)
from schemas.base import EventPayload
from schemas.conversation import events as conv
from schemas.workflow import events as wf

T0 = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)
Windows = dict[tuple[UUID, datetime], Counters]
Members = dict[tuple[UUID, datetime, str, str], int]


@dataclass
class DictFacts:
    """The rules' `Facts` on dicts."""

    conversations: dict[UUID, ConversationFact] = field(default_factory=dict)
    messages: dict[UUID, MessageFact] = field(default_factory=dict)
    runs: dict[UUID, RunFact] = field(default_factory=dict)
    windows: Windows = field(default_factory=dict)
    members: Members = field(default_factory=dict)

    async def conversation(self, conversation_id: UUID) -> ConversationFact | None:
        return self.conversations.get(conversation_id)

    async def put_conversation(self, fact: ConversationFact) -> None:
        self.conversations[fact.conversation_id] = fact

    async def message(self, message_id: UUID) -> MessageFact | None:
        return self.messages.get(message_id)

    async def put_message(self, fact: MessageFact) -> None:
        self.messages[fact.message_id] = fact

    async def drop_message(self, message_id: UUID) -> None:
        del self.messages[message_id]

    async def run(self, run_id: UUID) -> RunFact | None:
        return self.runs.get(run_id)

    async def put_run(self, fact: RunFact) -> None:
        self.runs[fact.run_id] = fact

    async def drop_run(self, run_id: UUID) -> None:
        del self.runs[run_id]

    async def add(self, app_id: UUID, window: datetime, counters: Counters) -> None:
        before = self.windows.get((app_id, window), Counters())
        self.windows[(app_id, window)] = Counters(**{
            f.name: getattr(before, f.name) + getattr(counters, f.name)
            for f in fields(Counters)})

    async def add_member(self, app_id: UUID, window: datetime, kind: str, member: str,
                         count: int) -> None:
        key = (app_id, window, kind, member)
        self.members[key] = self.members.get(key, 0) + count

    def counted(self) -> tuple[Windows, Members]:
        return ({k: c for k, c in self.windows.items() if c},
                {k: n for k, n in self.members.items() if n})


@dataclass
class DifyRows:
    """Dify's conversations, messages (with their feedback) and workflow_runs rows as the
    events leave them, counted per minute as its statistics SQL counts them."""

    conversations: dict[UUID, tuple[UUID, datetime]] = field(default_factory=dict)
    messages: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    runs: dict[UUID, dict[str, Any]] = field(default_factory=dict)

    def counted(self) -> tuple[Windows, Members]:
        sums: dict[tuple[UUID, datetime], Tally[str]] = defaultdict(Tally)
        members: Members = defaultdict(int)
        per_conversation = Tally(m["conversation"] for m in self.messages.values())
        for m in self.messages.values():
            key = (m["app"], window_of(m["at"]))
            sums[key].update({"messages": 1, "message_tokens": m["prompt"],
                              "answer_tokens": m["answer"], "price_units": m["price"],
                              "latency_us": m["latency"], "likes": int(m["rating"] == "like")})
            members[(*key, CONVERSATION, str(m["conversation"]))] += 1
            members[(*key, END_USER, str(m["end_user"]))] += 1
        for conversation, (app, at) in self.conversations.items():
            if per_conversation[conversation]:
                sums[(app, window_of(at))].update(
                    {"sessions": 1, "session_messages": per_conversation[conversation]})
        for r in self.runs.values():
            key = (r["app"], window_of(r["at"]))
            sums[key].update({"runs": 1, "run_tokens": r["tokens"]})
            members[(*key, RUN_CREATOR, r["creator"])] += 1
        windows = {k: Counters(**{n: v for n, v in s.items()}) for k, s in sums.items()}
        return {k: c for k, c in windows.items() if c}, dict(members)

    def daily(self, app: UUID, timezone: str, start: datetime | None,
              end: datetime | None) -> tuple[dict[date, Counters], dict[str, dict[date, int]]]:
        """Per day of `timezone`, rows created in [start, end), as Dify's statistics SQL
        groups them: the sums, and the distinct members of each kind."""
        zone = ZoneInfo(timezone)

        def day(at: datetime) -> date | None:
            inside = (start is None or at >= start) and (end is None or at < end)
            return at.astimezone(zone).date() if inside else None

        sums: dict[date, Tally[str]] = defaultdict(Tally)
        seen: dict[str, dict[date, set[str]]] = {
            kind: defaultdict(set) for kind in (CONVERSATION, END_USER, RUN_CREATOR)}
        per_conversation = Tally(m["conversation"] for m in self.messages.values())
        for m in self.messages.values():
            if m["app"] == app and (d := day(m["at"])):
                sums[d].update({"messages": 1, "message_tokens": m["prompt"],
                                "answer_tokens": m["answer"], "price_units": m["price"],
                                "latency_us": m["latency"],
                                "likes": int(m["rating"] == "like")})
                seen[CONVERSATION][d].add(str(m["conversation"]))
                seen[END_USER][d].add(str(m["end_user"]))
        for conversation, (owner, at) in self.conversations.items():
            if owner == app and per_conversation[conversation] and (d := day(at)):
                sums[d].update({"sessions": 1,
                                "session_messages": per_conversation[conversation]})
        for r in self.runs.values():
            if r["app"] == app and (d := day(r["at"])):
                sums[d].update({"runs": 1, "run_tokens": r["tokens"]})
                seen[RUN_CREATOR][d].add(r["creator"])
        return ({d: Counters(**s) for d, s in sorted(sums.items())},
                {kind: {d: len(v) for d, v in sorted(days.items())}
                 for kind, days in seen.items()})


class History:
    """Random events of two apps (chat and workflow), each aggregate's in order, and the rows
    they leave in Dify."""

    def __init__(self, seed: int, pace: int = 80) -> None:
        self.random = random.Random(seed)
        self.pace = pace  # at most this many seconds between two events
        self.chat_app, self.flow_app = uuid4(), uuid4()
        self.users = [uuid4() for _ in range(4)]
        self.at = T0
        self.events: list[Envelope[EventPayload]] = []
        self.versions: dict[UUID, int] = {}
        self.rows = DifyRows()
        self.open_runs: list[UUID] = []
        self.ended_runs: list[UUID] = []

    def emit(self, aggregate_type: str, aggregate_id: UUID, payload: EventPayload) -> None:
        self.at += timedelta(seconds=self.random.randint(0, self.pace))
        version = self.versions[aggregate_id] = self.versions.get(aggregate_id, 0) + 1
        cid = uuid4()
        event = Envelope.new(payload, aggregate_type=aggregate_type, aggregate_id=aggregate_id,
                             aggregate_version=version, tenant_id=None, correlation_id=cid,
                             causation_id=cid)
        self.events.append(Envelope(**{**event.__dict__, "occurred_at": self.at,
                                       "position": len(self.events) + 1}))

    def ask(self, conversation: UUID | None) -> None:
        if conversation is None:
            conversation, user = uuid4(), self.random.choice(self.users)
            self.emit("Conversation", conversation, conv.ConversationStarted(
                app_id=self.chat_app, end_user_id=user, user=str(user), mode="chat",
                name="New conversation", inputs={}))
            self.rows.conversations[conversation] = (self.chat_app, self.at)
        else:
            user = next(m["end_user"] for m in self.rows.messages.values()
                        if m["conversation"] == conversation)
        message = uuid4()
        self.emit("Conversation", conversation, conv.MessageCreated(
            message_id=message, task_id=uuid4(), app_id=self.chat_app, end_user_id=user,
            mode="chat", query="Hi?", inputs={}, config={}))
        self.rows.messages[message] = {
            "app": self.chat_app, "conversation": conversation, "end_user": user,
            "at": self.at, "prompt": 0, "answer": 0, "price": 0, "latency": 0, "rating": None}

    def answer(self, message: UUID, stopped: bool) -> None:
        row = self.rows.messages[message]
        usage = {"prompt_tokens": self.random.randint(1, 50),
                 "completion_tokens": self.random.randint(0, 90),
                 "total_price": f"{self.random.randint(0, 99999) / 10_000_000:.7f}",
                 "latency": round(self.random.uniform(0.01, 3), 6)}
        kind = conv.MessageStopped if stopped else conv.MessageAnswered
        self.emit("Conversation", row["conversation"], kind(
            message_id=message, answer="Hello.", usage=usage))
        row.update(prompt=usage["prompt_tokens"], answer=usage["completion_tokens"],
                   price=price_units(usage["total_price"]),
                   latency=microseconds(usage["latency"]))

    def rate(self, message: UUID) -> None:
        row = self.rows.messages[message]
        rating = self.random.choice(["like", "dislike", None])
        self.emit("Conversation", row["conversation"], conv.MessageFeedbackGiven(
            message_id=message, rating=rating))
        row["rating"] = rating

    def expire(self, conversation: UUID) -> None:
        mine = [m for m, row in self.rows.messages.items() if row["conversation"] == conversation]
        gone = self.random.sample(mine, self.random.randint(1, len(mine)))
        self.emit("Conversation", conversation, conv.MessagesExpired(message_ids=gone))
        for message in gone:
            del self.rows.messages[message]

    def delete(self, conversation: UUID) -> None:
        self.emit("Conversation", conversation, conv.ConversationDeleted())
        del self.rows.conversations[conversation]
        for message in [m for m, row in self.rows.messages.items()
                        if row["conversation"] == conversation]:
            del self.rows.messages[message]

    def start_run(self) -> None:
        run, user = uuid4(), self.random.choice(self.users)
        trigger = self.random.choice(["app-run", "app-run", "debugging"])
        self.emit("WorkflowRun", run, wf.WorkflowRunStarted(
            app_id=self.flow_app, workflow_id=uuid4(), task_id=uuid4(), mode="workflow",
            triggered_from=trigger, user=str(user), end_user_id=user, inputs={}, system={}))
        if trigger == "app-run":
            self.rows.runs[run] = {"app": self.flow_app, "at": self.at, "tokens": 0,
                                   "creator": str(user)}
        self.open_runs.append(run)

    def end_run(self, run: UUID) -> None:
        tokens = self.random.randint(0, 500)
        end = self.random.choice([
            wf.WorkflowRunSucceeded(outputs={}, elapsed_time=1.0, total_tokens=tokens),
            wf.WorkflowRunFailed(error="boom", elapsed_time=1.0, total_tokens=tokens),
            wf.WorkflowRunStopped(elapsed_time=1.0, total_tokens=tokens)])
        self.emit("WorkflowRun", run, end)
        if run in self.rows.runs:
            self.rows.runs[run]["tokens"] = tokens
        self.open_runs.remove(run)
        self.ended_runs.append(run)

    def expire_run(self, run: UUID) -> None:
        self.emit("WorkflowRun", run, wf.WorkflowRunExpired())
        self.rows.runs.pop(run, None)
        self.ended_runs.remove(run)

    def play(self, steps: int) -> History:
        for _ in range(steps):
            messages = list(self.rows.messages)
            live = sorted({row["conversation"] for row in self.rows.messages.values()})
            step = self.random.choice(["ask", "ask", "answer", "rate", "expire", "delete",
                                       "run", "end", "expire run"])
            if step == "ask":
                self.ask(self.random.choice([None, *live]) if live else None)
            elif step == "answer" and messages:
                self.answer(self.random.choice(messages), stopped=self.random.random() < 0.2)
            elif step == "rate" and messages:
                self.rate(self.random.choice(messages))
            elif step == "expire" and live and self.random.random() < 0.4:
                self.expire(self.random.choice(live))
            elif step == "delete" and live and self.random.random() < 0.3:
                self.delete(self.random.choice(live))
            elif step == "run":
                self.start_run()
            elif step == "end" and self.open_runs:
                self.end_run(self.random.choice(self.open_runs))
            elif step == "expire run" and self.ended_runs and self.random.random() < 0.4:
                self.expire_run(self.random.choice(self.ended_runs))
        return self
