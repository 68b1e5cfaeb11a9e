"""Read-model table of the mail context: each mail asked for and how its delivery stands
(queued → sent, or failed: dead-lettered, until a replay sends it). Only projectors write it."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, String, Table, Text, Uuid

from projections.tables import READ, metadata

mails = Table(
    "mails", metadata,
    Column("id", Uuid, primary_key=True),  # the Mail aggregate
    Column("tenant_id", Uuid),  # the workspace that asked (none for account mails)
    Column("template", String(64), nullable=False),
    Column("recipient", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # "queued" | "sent" | "failed"
    Column("error", Text),  # why it failed (the last failure), cleared once sent
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    schema=READ,
)
