"""Read-model tables and the bookkeeping tables of projectors, relay and gateway.

Read models live in a logical schema "read" that is mapped to a versioned Postgres schema
(console_v1 now): a rebuild can fill console_v2 beside the live one and reads switch to it.
Only projectors write read-model tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

READ = "read"  # logical schema name, translated at connect time
ACTIVE_READ_SCHEMA = "console_v1"
PROJECTION_NAME = "console_v1"

metadata = MetaData()

# --- read models -----------------------------------------------------------------------

setup_state = Table(
    "setup_state", metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("account_id", Uuid, nullable=False),
    Column("workspace_id", Uuid, nullable=False),
    Column("setup_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

accounts = Table(
    "accounts", metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(255), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("interface_language", String(32), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

workspaces = Table(
    "workspaces", metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

workspace_members = Table(
    "workspace_members", metadata,
    Column("workspace_id", Uuid, ForeignKey(f"{READ}.workspaces.id", ondelete="CASCADE"),
           primary_key=True),
    Column("account_id", Uuid, primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

apps = Table(
    "apps", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("mode", String(32), nullable=False),
    Column("description", Text, nullable=False),
    Column("icon_type", String(16), nullable=False),
    Column("icon", String(255), nullable=False),
    Column("icon_background", String(32), nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Uuid, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("app_id", Uuid, nullable=True, index=True),
    Column("token", String(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

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
)

