"""The statistics projection's read model: apps' one-minute windows and the facts the counting
rules keep (`projections/statistics/rules.py`). It is a projection of its own, beside the
console's: its own versions (`statistics_v1`, …), its own consumer group, rebuilt on its own
(`eddy projections rebuild statistics`). Only its projectors write these tables."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

from projections.tables import READ

STATISTICS = "statistics"  # the projection's name

metadata = MetaData()

# One row per app and minute that saw something; every column a sum (rules.Counters).
stat_windows = Table(
    "stat_windows", metadata,
    Column("app_id", Uuid, primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("messages", BigInteger, nullable=False, server_default="0"),
    Column("message_tokens", BigInteger, nullable=False, server_default="0"),
    Column("answer_tokens", BigInteger, nullable=False, server_default="0"),
    Column("price_units", BigInteger, nullable=False, server_default="0"),
    Column("latency_us", BigInteger, nullable=False, server_default="0"),
    Column("likes", BigInteger, nullable=False, server_default="0"),
    Column("sessions", BigInteger, nullable=False, server_default="0"),
    Column("session_messages", BigInteger, nullable=False, server_default="0"),
    Column("runs", BigInteger, nullable=False, server_default="0"),
    Column("run_tokens", BigInteger, nullable=False, server_default="0"),
    schema=READ,
)

# Whom a window saw (rules.CONVERSATION, END_USER, RUN_CREATOR) and how many of its rows:
# distinct counts over a day are counts of distinct members with count > 0.
stat_members = Table(
    "stat_members", metadata,
    Column("app_id", Uuid, primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("member", String(255), primary_key=True),
    Column("count", BigInteger, nullable=False),
    schema=READ,
)

# The rules' facts (rules.ConversationFact, MessageFact, RunFact).
stat_conversations = Table(
    "stat_conversations", metadata,
    Column("conversation_id", Uuid, primary_key=True),
    Column("app_id", Uuid, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("message_ids", JSONB, nullable=False),
    schema=READ,
)

stat_messages = Table(
    "stat_messages", metadata,
    Column("message_id", Uuid, primary_key=True),
    Column("app_id", Uuid, nullable=False),
    Column("conversation_id", Uuid, nullable=False),
    Column("end_user_id", Uuid, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("message_tokens", BigInteger, nullable=False),
    Column("answer_tokens", BigInteger, nullable=False),
    Column("price_units", BigInteger, nullable=False),
    Column("latency_us", BigInteger, nullable=False),
    Column("rating", String(16)),
    schema=READ,
)

stat_runs = Table(
    "stat_runs", metadata,
    Column("run_id", Uuid, primary_key=True),
    Column("app_id", Uuid, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("creator", String(255), nullable=False),
    Column("tokens", BigInteger, nullable=False),
    schema=READ,
)
