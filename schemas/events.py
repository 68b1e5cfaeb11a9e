"""Versioned event payload schemas, and the upcasters that lift old versions on read.

An event's payload is validated against `(type, schema_version)` when recorded. Stored events
are never rewritten: an event stored under an older schema version is upcast, step by step,
to the current version whenever it is read (by aggregates, the relay and projectors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class EventPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


# --- workspace context: setup, accounts, workspaces -------------------------------------


class SetupCompleted(EventPayload):
    event_type = "SetupCompleted"
    account_id: UUID
    workspace_id: UUID


class AccountRegistered(EventPayload):
    event_type = "AccountRegistered"
    email: str
    name: str
    password_hash: str
    interface_language: str = "en-US"
    timezone: str = "UTC"


class WorkspaceCreated(EventPayload):
    event_type = "WorkspaceCreated"
    name: str
    owner_account_id: UUID


# --- apps context: apps and API keys ----------------------------------------------------


class AppCreated(EventPayload):
    """v2 split v1's single `icon` string into Dify's icon_type / icon / icon_background."""

    event_type = "AppCreated"
    schema_version = 2
    name: str
    mode: str
    description: str = ""
    icon_type: str = "emoji"
    icon: str = "🤖"
    icon_background: str = "#FFEAD5"
    created_by: UUID


class AppUpdated(EventPayload):
    event_type = "AppUpdated"
    name: str
    description: str
    icon_type: str
    icon: str
    icon_background: str
    updated_by: UUID


class AppDeleted(EventPayload):
    event_type = "AppDeleted"
    deleted_by: UUID


class ApiKeyCreated(EventPayload):
    event_type = "ApiKeyCreated"
    key_type: str  # "app" | "dataset"
    app_id: UUID | None
    token: str


class ApiKeyRevoked(EventPayload):
    event_type = "ApiKeyRevoked"


# --- knowledge context: datasets, documents, segments -----------------------------------


class DatasetCreated(EventPayload):
    event_type = "DatasetCreated"
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

    event_type = "DatasetUpdated"
    name: str
    description: str
    indexing_technique: str | None
    permission: str
    embedding_model: str | None
    embedding_model_provider: str | None
    retrieval_model: dict[str, Any]
    updated_by: UUID


class DatasetDeleted(EventPayload):
    event_type = "DatasetDeleted"
    deleted_by: UUID


class SourceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str  # storage key of the uploaded bytes
    name: str
    size: int
    extension: str
    mime_type: str | None = None


class DocumentCreated(EventPayload):
    event_type = "DocumentCreated"
    dataset_id: UUID
    name: str
    position: int
    batch: str
    data_source_type: str  # "upload_file" (create-by-text stores the text as a file too)
    source: SourceFile
    doc_form: str
    doc_language: str
    process_rule: dict[str, Any]
    indexing_technique: str
    created_from: str
    created_by: UUID


class DocumentSourceReplaced(EventPayload):
    """update-by-text / update-by-file: new content (and maybe name / rules) to index."""

    event_type = "DocumentSourceReplaced"
    name: str
    source: SourceFile
    process_rule: dict[str, Any]
    updated_by: UUID


class DocumentIndexingRequested(EventPayload):
    event_type = "DocumentIndexingRequested"
    attempt: int
    lane: str  # "priority" | "bulk"
    reason: str  # "created" | "updated" | "retry" | "reindex"


class DocumentProcessingStarted(EventPayload):
    event_type = "DocumentProcessingStarted"
    attempt: int


class DocumentParsed(EventPayload):
    event_type = "DocumentParsed"
    attempt: int
    text_key: str
    characters: int


class DocumentCleaned(EventPayload):
    event_type = "DocumentCleaned"
    attempt: int
    text_key: str
    characters: int


class DocumentSplit(EventPayload):
    """Segments of this attempt are recorded in the same transaction."""

    event_type = "DocumentSplit"
    attempt: int
    chunks_key: str
    total_segments: int
    word_count: int
    tokens: int


class DocumentSegmentsIndexed(EventPayload):
    event_type = "DocumentSegmentsIndexed"
    attempt: int
    segment_ids: list[UUID]
    completed_segments: int


class DocumentIndexingCompleted(EventPayload):
    event_type = "DocumentIndexingCompleted"
    attempt: int
    completed_segments: int


class DocumentIndexingFailed(EventPayload):
    event_type = "DocumentIndexingFailed"
    attempt: int
    error: str


class DocumentIndexingPaused(EventPayload):
    event_type = "DocumentIndexingPaused"
    paused_by: UUID | None = None


class DocumentIndexingResumed(EventPayload):
    event_type = "DocumentIndexingResumed"
    lane: str


class DocumentUpdated(EventPayload):
    """Name / enabled / archived flags (the documents status actions)."""

    event_type = "DocumentUpdated"
    name: str
    enabled: bool
    archived: bool
    updated_by: UUID | None = None


class DocumentDeleted(EventPayload):
    event_type = "DocumentDeleted"
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

    event_type = "SegmentCreated"
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

    event_type = "SegmentUpdated"
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
    event_type = "SegmentDeleted"
    dataset_id: UUID
    document_id: UUID


class SegmentIndexed(EventPayload):
    """A single segment's vector written (after a hand edit or addition)."""

    event_type = "SegmentIndexed"
    index_node_hash: str


# --- knowledge context: metadata fields and values (Dify's dataset metadata) ------------


class DatasetMetadataFieldAdded(EventPayload):
    event_type = "DatasetMetadataFieldAdded"
    metadata_id: UUID
    name: str
    type: str  # "string" | "number" | "time"
    created_by: UUID | None = None


class DatasetMetadataFieldRenamed(EventPayload):
    event_type = "DatasetMetadataFieldRenamed"
    metadata_id: UUID
    name: str
    updated_by: UUID | None = None


class DatasetMetadataFieldDeleted(EventPayload):
    """Documents' values for the field go with it (values are keyed by field id)."""

    event_type = "DatasetMetadataFieldDeleted"
    metadata_id: UUID
    deleted_by: UUID | None = None


class DatasetBuiltInFieldsToggled(EventPayload):
    event_type = "DatasetBuiltInFieldsToggled"
    enabled: bool
    updated_by: UUID | None = None


class DocumentMetadataUpdated(EventPayload):
    """The document's full new metadata values, keyed by field id (not a diff)."""

    event_type = "DocumentMetadataUpdated"
    values: dict[str, Any]
    updated_by: UUID | None = None


# --- knowledge context: tags (workspace-scoped, type "knowledge") -----------------------


class TagCreated(EventPayload):
    event_type = "TagCreated"
    name: str
    type: str = "knowledge"
    created_by: UUID | None = None


class TagRenamed(EventPayload):
    event_type = "TagRenamed"
    name: str
    updated_by: UUID | None = None


class TagDeleted(EventPayload):
    event_type = "TagDeleted"
    deleted_by: UUID | None = None


class TagBound(EventPayload):
    event_type = "TagBound"
    target_id: UUID
    created_by: UUID | None = None


class TagUnbound(EventPayload):
    event_type = "TagUnbound"
    target_id: UUID


class TagNameClaimed(EventPayload):
    """A workspace's tag name is held by one tag (the TagName aggregate's id is derived
    from workspace, type and name, so the store itself keeps names unique)."""

    event_type = "TagNameClaimed"
    tag_id: UUID


class TagNameReleased(EventPayload):
    event_type = "TagNameReleased"
    tag_id: UUID


PAYLOADS: dict[str, type[EventPayload]] = {
    cls.event_type: cls
    for cls in (
        SetupCompleted,
        AccountRegistered,
        WorkspaceCreated,
        AppCreated,
        AppUpdated,
        AppDeleted,
        ApiKeyCreated,
        ApiKeyRevoked,
        DatasetCreated,
        DatasetUpdated,
        DatasetDeleted,
        DocumentCreated,
        DocumentSourceReplaced,
        DocumentIndexingRequested,
        DocumentProcessingStarted,
        DocumentParsed,
        DocumentCleaned,
        DocumentSplit,
        DocumentSegmentsIndexed,
        DocumentIndexingCompleted,
        DocumentIndexingFailed,
        DocumentIndexingPaused,
        DocumentIndexingResumed,
        DocumentUpdated,
        DocumentDeleted,
        SegmentCreated,
        SegmentUpdated,
        SegmentDeleted,
        SegmentIndexed,
        DatasetMetadataFieldAdded,
        DatasetMetadataFieldRenamed,
        DatasetMetadataFieldDeleted,
        DatasetBuiltInFieldsToggled,
        DocumentMetadataUpdated,
        TagCreated,
        TagRenamed,
        TagDeleted,
        TagBound,
        TagUnbound,
        TagNameClaimed,
        TagNameReleased,
    )
}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _app_created_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 stored an emoji or an image URL in `icon`; v2 says which it is.
    icon = payload.pop("icon", "🤖") or "🤖"
    is_image = icon.startswith(("http://", "https://"))
    return {
        **payload,
        "icon_type": "image" if is_image else "emoji",
        "icon": icon,
        "icon_background": payload.pop("icon_background", "#FFEAD5"),
    }


def _segment_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 child chunks were all made by the splitter.
    return {**payload, "child_chunks": [{"type": "automatic", **c}
                                        for c in payload.get("child_chunks", [])]}


# (event type, from version) -> function producing the payload of version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("AppCreated", 1): _app_created_v1_to_v2,
    ("SegmentCreated", 1): _segment_v1_to_v2,
    ("SegmentUpdated", 1): _segment_v1_to_v2,
}


class UnknownEventType(Exception):
    pass


def upcast(event_type: str, version: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Lift a stored payload to the current schema version of its event type."""
    schema = PAYLOADS.get(event_type)
    if schema is None:
        raise UnknownEventType(event_type)
    while version < schema.schema_version:
        payload = UPCASTERS[(event_type, version)](dict(payload))
        version += 1
    return version, payload
