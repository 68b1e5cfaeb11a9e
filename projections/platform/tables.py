"""Read-model tables of the platform context: setup, accounts, workspaces, apps, API
keys. Only projectors write them."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB

from projections.tables import READ, metadata

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
    # the row of `account_credentials` (beside the store, not a read model) with its hash
    # None: a pending (invited) account that has not chosen a password
    Column("credentials_id", Uuid, nullable=True),
    Column("interface_language", String(32), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # "active" | "pending"
    Column("created_at", DateTime(timezone=True), nullable=False),
    # the workspace its console works in (None: its oldest membership)
    Column("current_workspace_id", Uuid, nullable=True),
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
    Column("invited_by", Uuid, nullable=True),
    Column("mail_id", Uuid, nullable=True),  # the invitation's mail (its delivery status)
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
    # Never the token itself (migration 0004 dropped that column): its sha256 for lookup,
    # its ciphertext for the console (None for keys created before), a masked hint.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("token_ciphertext", Text, nullable=True),
    Column("token_hint", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

# Model providers of a workspace. Credentials only sealed with the workspace's key (opened
# by `projections.platform.models`) and masked for display.
provider_credentials = Table(
    "provider_credentials", metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("provider", String(255), primary_key=True),
    Column("credentials_ciphertext", Text, nullable=False),
    Column("credentials_masked", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

custom_models = Table(
    "custom_models", metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("provider", String(255), primary_key=True),
    Column("model", String(255), primary_key=True),
    Column("model_type", String(32), primary_key=True),
    Column("credentials_ciphertext", Text, nullable=False),
    Column("credentials_masked", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

default_models = Table(
    "default_models", metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("model_type", String(32), primary_key=True),
    Column("provider", String(255), nullable=False),
    Column("model", String(255), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

# Ids of deleted aggregates (and of deleted parts, such as a dataset's metadata fields), for
# every context of this read model. Events of different aggregates are applied in any
# relative order (each travels in its own aggregate's partition), so a child's event may be
# applied after its parent's deletion removed the rows under it: the projector adding a
# child row looks its parent up here first instead of bringing the child back.
tombstones = Table(
    "tombstones", metadata,
    Column("id", Uuid, primary_key=True),
    Column("kind", String(32), nullable=False),  # the aggregate type, or the part's name
    Column("deleted_at", DateTime(timezone=True), nullable=False),  # the event's time
    schema=READ,
)
