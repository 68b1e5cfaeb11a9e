"""Read-model tables and the bookkeeping tables of projectors, relay and gateway.

Read models (each context's `tables.py`) live in a logical schema "read" that is mapped to a
versioned Postgres schema (console_v1, console_v2, ...): a rebuild fills a new version beside
the live one and reads switch to it (`projections/versions.py`, `projections/rebuild.py`).
Only projectors write read-model tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

READ = "read"  # logical schema name, translated to a version's schema at connect time
PROJECTION_NAME = "console"  # the read model the console and Service API answer from
VERSIONS_CHANNEL = "eddy_projection_versions"  # NOTIFYed when a version changes state

metadata = MetaData()

# --- bookkeeping (public schema) ---------------------------------------------------------

# The versions of each projection: the one reads use (active), the others still maintained
# (a rebuild catching up, or the previous one kept for rollback), one being built.
projection_versions = Table(
    "projection_versions", metadata,
    Column("projection", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    # its Postgres schema, also its name in projection_tracking and projection_checkpoints
    Column("schema_name", String(64), nullable=False, unique=True),
    Column("layout", Integer, nullable=False),  # see projections/layout.py
    Column("state", String(16), nullable=False),  # building | catching_up | live
    Column("active", Boolean, nullable=False),
    Column("built_position", BigInteger),  # the store position its bulk load went up to
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("built_at", DateTime(timezone=True)),
    Column("activated_at", DateTime(timezone=True)),
)

projection_tracking = Table(
    "projection_tracking", metadata,
    Column("projection", String(64), primary_key=True),
    Column("aggregate_id", Uuid, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
    # set while an event of the aggregate is parked here (projections/parking.py): the
    # version of that event; the aggregate's later events wait behind it
    Column("parked_version", BigInteger),
)

# Every event a version parked: its error, and how the operator resolved it.
projection_parked = Table(
    "projection_parked", metadata,
    Column("projection", String(64), primary_key=True),  # the version's name (its schema)
    Column("aggregate_id", Uuid, primary_key=True),
    Column("aggregate_version", BigInteger, primary_key=True),
    Column("aggregate_type", String(255), nullable=False),
    Column("event_type", String(255), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("error", Text, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolution", String(16)),  # retried | skipped
    Column("reason", Text),  # the operator's, for a skip
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


# Password hashes, beside the store and never in an event or command (both reach topics,
# dead letters and `eddy events show`). The gateway writes a row before it sends the command
# registering the account; the event names the row (`credentials_id`), so a read model
# rebuilt from the store still finds it. Not a read model: no rebuild drops or refills it.
account_credentials = Table(
    "account_credentials", metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# Each workspace's keys for its secrets at rest (adapters/secrets.py `Keyring`), beside the
# store like `account_credentials`: the key itself sealed under SECRET_KEY. No row: the
# workspace seals with generation 0 (derived from SECRET_KEY). `eddy reset-encrypt-key-pair`
# adds the next generation as "active", marks the one before "previous" until every secret
# is re-sealed, then "retired" (its key gone). Not a read model: no rebuild touches it.
workspace_keys = Table(
    "workspace_keys", metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("generation", Integer, primary_key=True),
    Column("sealed_key", Text, nullable=True),  # None: generation 0, or retired
    Column("state", String(16), nullable=False),  # "active" | "previous" | "retired"
    Column("created_at", DateTime(timezone=True), nullable=False),
)
