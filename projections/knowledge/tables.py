"""Read-model tables of the knowledge context: datasets, documents, segments, metadata
fields, tags. Only projectors write them."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, String, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB

from projections.layout import since
from projections.tables import READ, metadata

datasets = Table(
    "datasets", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("permission", String(32), nullable=False),
    Column("indexing_technique", String(32)),
    Column("embedding_model", String(255)),
    Column("embedding_model_provider", String(255)),
    Column("retrieval_model", JSONB, nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Uuid),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("built_in_field_enabled", Boolean, nullable=False, default=False),
    # Layout 2: counts of its documents, kept by the projectors (recounted whenever one of
    # its documents changes) instead of aggregated over its documents on every read.
    Column("document_count", Integer, nullable=False, server_default="0", info=since(2)),
    Column("word_count", Integer, nullable=False, server_default="0", info=since(2)),
    # enabled, not archived, indexed: Dify's total_available_documents
    Column("available_document_count", Integer, nullable=False, server_default="0",
           info=since(2)),
    schema=READ,
)

# Each dataset's latest retrieval (any retrieval publishes its dataset's hits, even none):
# what the unused-datasets job reads, as Dify reads its dataset_queries. A table of its own,
# so a retrieval applied before its dataset's creation (another partition) still counts.
dataset_queries = Table(
    "dataset_queries", metadata,
    Column("dataset_id", Uuid, primary_key=True),
    Column("last_queried_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

documents = Table(
    "documents", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("dataset_id", Uuid, nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("batch", String(64), nullable=False),
    Column("data_source_type", String(32), nullable=False),
    # the uploaded file: SourceFile plus who uploaded it and when (Unix seconds)
    Column("source", JSONB, nullable=False),
    Column("doc_form", String(32), nullable=False),
    Column("doc_language", String(32), nullable=False),
    Column("process_rule", JSONB, nullable=False),
    Column("process_rule_id", Uuid, nullable=False),
    Column("indexing_technique", String(32), nullable=False),
    Column("created_from", String(32), nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("attempt", Integer, nullable=False),
    # Segments are live when their attempt equals this. Queries join on it, so a segment
    # event applied out of order across partitions (replays) can never show stale chunks.
    Column("split_attempt", Integer, nullable=False, default=0),
    Column("indexing_status", String(32), nullable=False),
    Column("is_paused", Boolean, nullable=False, default=False),
    Column("error", Text),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_at", DateTime(timezone=True)),
    Column("disabled_by", Uuid),
    Column("archived", Boolean, nullable=False, default=False),
    Column("archived_at", DateTime(timezone=True)),
    Column("word_count", Integer, nullable=False, default=0),
    Column("tokens", Integer, nullable=False, default=0),
    Column("total_segments", Integer, nullable=False, default=0),
    Column("completed_segments", Integer, nullable=False, default=0),
    Column("processing_started_at", DateTime(timezone=True)),
    Column("parsing_completed_at", DateTime(timezone=True)),
    Column("cleaning_completed_at", DateTime(timezone=True)),
    Column("splitting_completed_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("paused_at", DateTime(timezone=True)),
    Column("stopped_at", DateTime(timezone=True)),
    # metadata field id -> value; read through dataset_metadata_fields (names, types), so
    # values of a deleted field are never shown or matched
    Column("doc_metadata", JSONB, nullable=False, default=dict),
    schema=READ,
)

# Documents counted in a dataset's total_available_documents (Dify's "available").
AVAILABLE_DOCUMENT = (documents.c.enabled & ~documents.c.archived
                      & (documents.c.indexing_status == "completed"))

dataset_metadata_fields = Table(
    "dataset_metadata_fields", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("dataset_id", Uuid, nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("type", String(16), nullable=False),
    Column("created_by", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Uuid),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

tags = Table(
    "tags", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_by", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

tag_bindings = Table(
    "tag_bindings", metadata,
    Column("tag_id", Uuid, primary_key=True),
    Column("target_id", Uuid, primary_key=True, index=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("created_by", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)

segments = Table(
    "segments", metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("dataset_id", Uuid, nullable=False),
    Column("document_id", Uuid, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("answer", Text, nullable=False, default=""),
    Column("keywords", JSONB, nullable=False, default=list),
    Column("word_count", Integer, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("index_node_hash", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_at", DateTime(timezone=True)),
    Column("status", String(32), nullable=False),
    Column("child_chunks", JSONB, nullable=False, default=list),
    Column("created_by", Uuid),  # None for the split's own: their document's creator's
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Uuid),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("indexing_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    # Edited by hand (SegmentUpdated) since its split: from then on only its own events
    # (SegmentIndexed) set its status, never its document's DocumentSegmentsIndexed, which
    # may be applied later than the edit (another partition).
    Column("edited", Boolean, nullable=False, default=False),
    schema=READ,
)

# How often retrieval returned each segment (SegmentsHit, batched), beside the segment rows
# rather than in them: a batch applied in any order relative to the segment's creation (a
# rebuild) still counts, and counting never contends with indexing's updates of the row.
# Rows go with their dataset or document; a segment deleted on its own leaves its (unseen)
# count behind until then.
segment_hits = Table(
    "segment_hits", metadata,
    Column("segment_id", Uuid, primary_key=True),
    Column("dataset_id", Uuid, nullable=False, index=True),
    Column("document_id", Uuid, nullable=False, index=True),
    Column("hit_count", Integer, nullable=False),
    schema=READ,
)

# What hand edits (segments added, edited or deleted through the API) changed in their
# document's counts, per segment; the document shows its split's counts (DocumentSplit) plus
# the edits of that attempt. Kept apart from the segment rows because a deleted segment
# still counts (minus its words), and because an edit may be applied before its document's
# split (another partition): DocumentSplit then adds it up. Split-made segments never write
# here, so bulk indexing does not contend on the document row.
segment_edits = Table(
    "segment_edits", metadata,
    Column("segment_id", Uuid, primary_key=True),
    Column("dataset_id", Uuid, nullable=False, index=True),
    Column("document_id", Uuid, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("segments", Integer, nullable=False),
    Column("word_count", Integer, nullable=False),
    Column("tokens", Integer, nullable=False),
    Index("segment_edits_document_idx", "document_id", "attempt"),
    schema=READ,
)

# Segments a document's DocumentSegmentsIndexed named before their SegmentCreated was
# applied (another partition, running late): their creation is applied as completed, at
# the document's time, and removes the row. Empty once every event is applied.
segments_indexed_early = Table(
    "segments_indexed_early", metadata,
    Column("segment_id", Uuid, primary_key=True),
    Column("completed_at", DateTime(timezone=True), nullable=False),
    schema=READ,
)
