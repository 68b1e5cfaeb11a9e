"""Read-model tables of the conversation context: app configuration, end users,
conversations and messages. Only projectors write them."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, String, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB

from projections.tables import READ, metadata

app_model_configs = Table(
    "app_model_configs", metadata,
    Column("app_id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("config", JSONB, nullable=False),
    Column("updated_by", Uuid, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

app_sites = Table(
    "app_sites", metadata,
    Column("app_id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("site", JSONB, nullable=False),  # the fields set; the rest default from the app
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

end_users = Table(
    "end_users", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("app_id", Uuid, nullable=False, index=True),
    Column("session_id", String(255), nullable=False),  # the Service API's `user`
    Column("type", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

conversations = Table(
    "conversations", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("app_id", Uuid, nullable=False),
    Column("end_user_id", Uuid, nullable=False),
    Column("mode", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    Column("inputs", JSONB, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_conversations_end_user", "app_id", "end_user_id", "updated_at"),
    schema=READ,
)

upload_files = Table(
    "upload_files", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("app_id", Uuid, nullable=False),
    Column("end_user_id", Uuid, nullable=False),
    Column("name", String(255), nullable=False),
    Column("size", Integer, nullable=False),
    Column("extension", String(32), nullable=False),
    Column("mime_type", String(255), nullable=False),
    Column("key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

messages = Table(
    "messages", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("app_id", Uuid, nullable=False),
    Column("conversation_id", Uuid, nullable=False),
    Column("end_user_id", Uuid, nullable=False),
    Column("task_id", Uuid, nullable=False),
    Column("query", Text, nullable=False),
    Column("inputs", JSONB, nullable=False),
    Column("files", JSONB, nullable=False),
    Column("answer", Text, nullable=False),
    # pending -> normal (answered) | stopped | error, as Dify's message status
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("usage", JSONB, nullable=True),
    Column("retriever_resources", JSONB, nullable=False),
    Column("latency", Float, nullable=True),
    Column("feedback_rating", String(16), nullable=True),
    Column("feedback_content", Text, nullable=True),
    Column("feedback_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_messages_conversation", "conversation_id", "created_at"),
    Index("ix_messages_app_feedback", "app_id", "feedback_at"),
    schema=READ,
)

app_annotations = Table(
    "annotations", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("app_id", Uuid, nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_annotations_app_created", "app_id", "created_at"),
    schema=READ,
)

# Hits are events of conversations (other partitions than the annotation's): counted apart,
# so a hit applied before its annotation's creation still counts; a deleted annotation's
# tombstone keeps later ones out.
annotation_hits = Table(
    "annotation_hits", metadata,
    Column("annotation_id", Uuid, primary_key=True),
    Column("app_id", Uuid, nullable=False),
    Column("hit_count", Integer, nullable=False),
    schema=READ,
)

# one row per enable/disable request: its status for GET …/annotation-reply/…/status/{job}
annotation_reply_jobs = Table(
    "annotation_reply_jobs", metadata,
    Column("id", Uuid, primary_key=True),
    Column("app_id", Uuid, nullable=False),
    Column("action", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # waiting | processing | completed | error
    Column("error", Text, nullable=False, default=""),
    Column("score_threshold", Float, nullable=False),
    Column("embedding_provider_name", String(255), nullable=False),
    Column("embedding_model_name", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

# present while annotation reply is on (what the chat processor checks per question)
annotation_reply_settings = Table(
    "annotation_reply_settings", metadata,
    Column("app_id", Uuid, primary_key=True),
    Column("score_threshold", Float, nullable=False),
    Column("embedding_provider_name", String(255), nullable=False),
    Column("embedding_model_name", String(255), nullable=False),
    Column("collection", String(64), nullable=False),  # the index the chat searches
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)
