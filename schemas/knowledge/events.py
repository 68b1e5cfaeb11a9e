"""Event payloads of the knowledge context: datasets, documents and their indexing,
segments, metadata fields and values, tags."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import EventPayload, Upcaster
from schemas.knowledge.naming import legacy_process_rule_id, legacy_upload_file_id

# --- knowledge context: datasets, documents, segments -----------------------------------


class DatasetCreated(EventPayload):
    name: str
    description: str = ""
    indexing_technique: str | None  # "high_quality" | "economy" | None until first document
    permission: str = "only_me"
    embedding_model: str | None = None
    embedding_model_provider: str | None = None
    retrieval_model: dict[str, Any]
    created_by: UUID


class DatasetUpdated(EventPayload):
    """Carries the full new settings (not a diff), so projecting it needs no prior state."""

    name: str
    description: str
    indexing_technique: str | None
    permission: str
    embedding_model: str | None
    embedding_model_provider: str | None
    retrieval_model: dict[str, Any]
    updated_by: UUID


class DatasetDeleted(EventPayload):
    deleted_by: UUID


class DatasetNameClaimed(EventPayload):
    """A workspace's dataset name is held by one dataset (see TagNameClaimed)."""

    dataset_id: UUID


class DatasetNameReleased(EventPayload):
    dataset_id: UUID


class SourceFile(BaseModel):
    """An uploaded file (Dify's UploadFile): `id` is what the API shows as `upload_file_id`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: UUID
    key: str  # storage key of the uploaded bytes
    name: str
    size: int
    extension: str
    mime_type: str | None = None


class DocumentCreated(EventPayload):
    """v2: the source file has an id, and the process rule an id of its own (Dify's
    DatasetProcessRule, shown as `dataset_process_rule_id`)."""

    schema_version = 2
    dataset_id: UUID
    name: str
    position: int
    batch: str
    data_source_type: str  # "upload_file" (create-by-text stores the text as a file too)
    source: SourceFile
    doc_form: str
    doc_language: str
    process_rule: dict[str, Any]
    process_rule_id: UUID
    indexing_technique: str
    created_from: str
    created_by: UUID


class DocumentSourceReplaced(EventPayload):
    """update-by-text / update-by-file: new content (and maybe name / rules) to index.
    v2: ids for the file and the rule, as DocumentCreated."""

    schema_version = 2
    name: str
    source: SourceFile
    process_rule: dict[str, Any]
    process_rule_id: UUID  # unchanged when the update brings no new rule
    updated_by: UUID


class DocumentIndexingRequested(EventPayload):
    attempt: int
    lane: str  # "priority" | "bulk"
    reason: str  # "created" | "updated" | "retry" | "reindex" | "embedding_model_changed"


class DocumentProcessingStarted(EventPayload):
    attempt: int


class DocumentParsed(EventPayload):
    attempt: int
    text_key: str
    characters: int


class DocumentCleaned(EventPayload):
    attempt: int
    text_key: str
    characters: int


class DocumentSplit(EventPayload):
    """Segments of this attempt are recorded in the same transaction."""

    attempt: int
    chunks_key: str
    total_segments: int
    word_count: int
    tokens: int


class DocumentSegmentsIndexed(EventPayload):
    attempt: int
    segment_ids: list[UUID]
    completed_segments: int


class DocumentIndexingCompleted(EventPayload):
    attempt: int
    completed_segments: int


class DocumentIndexingFailed(EventPayload):
    attempt: int
    error: str


class DocumentIndexingPaused(EventPayload):
    paused_by: UUID | None = None


class DocumentIndexingResumed(EventPayload):
    lane: str


class DocumentUpdated(EventPayload):
    """Name / enabled / archived flags (the documents status actions)."""

    name: str
    enabled: bool
    archived: bool
    updated_by: UUID | None = None


class DocumentDeleted(EventPayload):
    dataset_id: UUID
    source_key: str


class ChildChunkData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: UUID
    content: str
    position: int
    word_count: int
    type: str = "automatic"  # "customized" once added or edited through the API


class SegmentCreated(EventPayload):
    """v2: each child chunk says whether it was split ("automatic") or hand-made."""

    schema_version = 2
    dataset_id: UUID
    document_id: UUID
    attempt: int  # 0 for segments added by hand through the API
    position: int
    content: str
    answer: str = ""
    keywords: list[str] = []
    word_count: int
    tokens: int
    index_node_hash: str
    child_chunks: list[ChildChunkData] = []
    created_by: UUID | None = None


class SegmentUpdated(EventPayload):
    """v2: child chunks carry their type (see SegmentCreated)."""

    schema_version = 2
    content: str
    answer: str
    keywords: list[str]
    word_count: int
    tokens: int
    index_node_hash: str
    enabled: bool
    child_chunks: list[ChildChunkData]
    updated_by: UUID | None = None


class SegmentDeleted(EventPayload):
    dataset_id: UUID
    document_id: UUID


class SegmentHits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    document_id: UUID
    segment_id: UUID
    count: int = Field(ge=1)


class SegmentsHit(EventPayload):
    """Retrievals of a dataset returned these segments (`count` times each), batched by the
    gateway over a short window: the projection adds them to the segments' hit counts."""

    dataset_id: UUID
    hits: list[SegmentHits]


class SegmentIndexed(EventPayload):
    """A single segment's vector written (after a hand edit or addition)."""

    index_node_hash: str


# --- knowledge context: metadata fields and values (Dify's dataset metadata) ------------


class DatasetMetadataFieldAdded(EventPayload):
    metadata_id: UUID
    name: str
    type: str  # "string" | "number" | "time"
    created_by: UUID | None = None


class DatasetMetadataFieldRenamed(EventPayload):
    metadata_id: UUID
    name: str
    updated_by: UUID | None = None


class DatasetMetadataFieldDeleted(EventPayload):
    """Documents' values for the field go with it (values are keyed by field id)."""

    metadata_id: UUID
    deleted_by: UUID | None = None


class DatasetBuiltInFieldsToggled(EventPayload):
    enabled: bool
    updated_by: UUID | None = None


class DocumentMetadataUpdated(EventPayload):
    """The document's full new metadata values, keyed by field id (not a diff)."""

    values: dict[str, Any]
    updated_by: UUID | None = None


# --- knowledge context: tags (workspace-scoped, type "knowledge") -----------------------


class TagCreated(EventPayload):
    name: str
    type: str = "knowledge"
    created_by: UUID | None = None


class TagRenamed(EventPayload):
    name: str
    updated_by: UUID | None = None


class TagDeleted(EventPayload):
    deleted_by: UUID | None = None


class TagBound(EventPayload):
    target_id: UUID
    created_by: UUID | None = None


class TagUnbound(EventPayload):
    target_id: UUID


class TagNameClaimed(EventPayload):
    """A workspace's tag name is held by one tag (the TagName aggregate's id is derived
    from workspace, type and name, so the store itself keeps names unique)."""

    tag_id: UUID


class TagNameReleased(EventPayload):
    tag_id: UUID


def _segment_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 child chunks were all made by the splitter.
    return {**payload, "child_chunks": [{"type": "automatic", **c}
                                        for c in payload.get("child_chunks", [])]}


def _source_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 named the file by its storage key only: ids derived from that key stand in.
    key = payload["source"]["key"]
    return {**payload, "source": {"id": str(legacy_upload_file_id(key)), **payload["source"]},
            "process_rule_id": str(legacy_process_rule_id(key))}


UPCASTERS: dict[tuple[type[EventPayload], int], Upcaster] = {
    (SegmentCreated, 1): _segment_v1_to_v2,
    (SegmentUpdated, 1): _segment_v1_to_v2,
    (DocumentCreated, 1): _source_v1_to_v2,
    (DocumentSourceReplaced, 1): _source_v1_to_v2,
}
