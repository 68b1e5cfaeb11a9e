"""Read-model tables and the bookkeeping tables of projectors, relay and gateway.

Read models (each context's `tables.py`) live in a logical schema "read" that is mapped to a
versioned Postgres schema (console_v1 now): a rebuild can fill console_v2 beside the live one
and reads switch to it. Only projectors write read-model tables.
"""

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

READ = "read"  # logical schema name, translated at connect time
ACTIVE_READ_SCHEMA = "console_v1"
PROJECTION_NAME = "console_v1"

metadata = MetaData()

# --- bookkeeping (public schema) ---------------------------------------------------------

projection_tracking = Table(
    "projection_tracking", metadata,
    Column("projection", String(64), primary_key=True),
    Column("aggregate_id", Uuid, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
)

projection_checkpoints = Table(
    "projection_checkpoints", metadata,
    Column("projection", String(64), primary_key=True),
    # every event at or below this position has been applied
    Column("watermark", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

relay_positions = Table(
    "relay_positions", metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope_key", String(512), primary_key=True),
    Column("command_id", Uuid, nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

command_outcomes = Table(
    "command_outcomes", metadata,
    Column("command_id", Uuid, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("aggregate_id", Uuid),
    Column("aggregate_version", BigInteger),
    Column("position", BigInteger),
    Column("result", JSONB),
    Column("error", JSONB),
    Column("created_at", DateTime(timezone=True)),
    Column("aggregates", JSONB),  # aggregate id -> [type, version] written by the command
)

