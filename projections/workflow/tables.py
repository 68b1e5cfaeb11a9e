"""Read-model tables of the workflow context: each app's draft, its versions (published
ones and debug-run snapshots of the draft) and which version it runs. Only projectors write
them. Secret environment variables stay sealed here, as in the events."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, String, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB

from projections.tables import READ, metadata

workflow_drafts = Table(
    "workflow_drafts", metadata,
    Column("app_id", Uuid, primary_key=True),
    Column("id", Uuid, nullable=False),  # the WorkflowDraft aggregate
    Column("tenant_id", Uuid, nullable=False),
    Column("graph", JSONB, nullable=False),
    Column("features", JSONB, nullable=False),
    Column("environment_variables", JSONB, nullable=False),
    Column("conversation_variables", JSONB, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("dependencies", JSONB, nullable=False),
    Column("created_by", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Uuid),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

workflow_versions = Table(
    "workflow_versions", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("app_id", Uuid, nullable=False),
    Column("kind", String(16), nullable=False),  # "workflow" | "draft"
    Column("version", String(64), nullable=False),
    Column("graph", JSONB, nullable=False),
    Column("features", JSONB, nullable=False),
    Column("environment_variables", JSONB, nullable=False),
    Column("conversation_variables", JSONB, nullable=False),
    Column("marked_name", String(255), nullable=False),
    Column("marked_comment", Text, nullable=False),
    Column("created_by", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_workflow_versions_app", "app_id", "kind", "created_at"),
    schema=READ,
)

published_workflows = Table(
    "published_workflows", metadata,
    Column("app_id", Uuid, primary_key=True),
    Column("workflow_id", Uuid, nullable=False),
    Column("published_by", Uuid),
    Column("published_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

# A published workflow's trigger nodes (its published version's; a republish replaces them).
# A schedule's next fire time moves on when its tick's run is recorded (a missed tick: the
# row stays due, and the poller fires the latest tick once).
workflow_schedules = Table(
    "workflow_schedules", metadata,
    Column("app_id", Uuid, primary_key=True),
    Column("node_id", String(255), primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("workflow_id", Uuid, nullable=False),
    Column("cron_expression", String(255), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("next_fire_at", DateTime(timezone=True), nullable=False),
    Index("ix_workflow_schedules_next_fire_at", "next_fire_at"),
    schema=READ,
)

# `id` (schemas.workflow.naming.trigger_id_for) is what a webhook's URL names, next to
# the signature the gateway makes and checks; `config` is the node's data.
workflow_webhooks = Table(
    "workflow_webhooks", metadata,
    Column("id", Uuid, primary_key=True),
    Column("app_id", Uuid, nullable=False),
    Column("node_id", String(255), nullable=False),
    Column("tenant_id", Uuid, nullable=False),
    Column("workflow_id", Uuid, nullable=False),
    Column("config", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_workflow_webhooks_app", "app_id", "node_id", unique=True),
    schema=READ,
)
