"""Command payloads of the knowledge context."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, model_validator

from schemas.base import CommandPayload
from schemas.knowledge.events import SegmentHits, SourceFile

# --- knowledge ------------------------------------------------------------------------------


class CreateDataset(CommandPayload):
    dataset_id: UUID
    name: str
    description: str = ""
    indexing_technique: Literal["high_quality", "economy"] | None = None
    permission: str = "only_me"
    embedding_model: str | None = None
    embedding_model_provider: str | None = None
    retrieval_model: dict[str, Any]


class UpdateDataset(CommandPayload):
    dataset_id: UUID
    name: str | None = None
    description: str | None = None
    indexing_technique: Literal["high_quality", "economy"] | None = None
    permission: str | None = None
    embedding_model: str | None = None
    embedding_model_provider: str | None = None
    retrieval_model: dict[str, Any] | None = None
    # The dataset's documents as the gateway read them: re-indexed when this update
    # switches a high_quality dataset to another embedding model.
    document_ids: list[UUID] = []


class DeleteDataset(CommandPayload):
    dataset_id: UUID


class CreateDocument(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    name: str
    position: int
    batch: str
    source: SourceFile
    doc_form: str = "text_model"
    doc_language: str = "English"
    process_rule: dict[str, Any]
    process_rule_id: UUID
    indexing_technique: Literal["high_quality", "economy"]
    lane: Literal["priority", "bulk"]


class ReplaceDocumentSource(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    name: str | None = None
    source: SourceFile
    process_rule: dict[str, Any] | None = None  # None: the document keeps its rule (and id)
    process_rule_id: UUID | None = None  # the new rule's id, with process_rule
    lane: Literal["priority", "bulk"]

    @model_validator(mode="after")
    def _rule_with_its_id(self) -> ReplaceDocumentSource:
        if (self.process_rule is None) != (self.process_rule_id is None):
            raise ValueError("process_rule and process_rule_id go together")
        return self


class ControlDocumentIndexing(CommandPayload):
    """pause / resume / retry / reindex one or more documents of a dataset."""

    dataset_id: UUID
    document_ids: list[UUID]
    action: Literal["pause", "resume", "retry", "reindex"]


class UpdateDocumentStatus(CommandPayload):
    dataset_id: UUID
    document_ids: list[UUID]
    action: Literal["enable", "disable", "archive", "un_archive"]


class RenameDocument(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    name: str


class DeleteDocument(CommandPayload):
    dataset_id: UUID
    document_id: UUID


class NewSegment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    segment_id: UUID
    content: str
    answer: str = ""
    keywords: list[str] = []
    word_count: int
    tokens: int


class CreateSegments(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    first_position: int
    segments: list[NewSegment]


class UpdateSegment(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID
    content: str | None = None
    answer: str | None = None
    keywords: list[str] | None = None
    enabled: bool | None = None
    word_count: int | None = None
    tokens: int | None = None


class DeleteSegment(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID


# --- knowledge: child chunks of hierarchical (parent-child) documents ------------------------


class CreateChildChunk(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID
    child_chunk_id: UUID
    content: str


class UpdateChildChunk(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID
    child_chunk_id: UUID
    content: str


class DeleteChildChunk(CommandPayload):
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID
    child_chunk_id: UUID


# --- knowledge: metadata fields and document metadata values ---------------------------------


class AddMetadataField(CommandPayload):
    dataset_id: UUID
    metadata_id: UUID
    name: str
    type: Literal["string", "number", "time"]


class RenameMetadataField(CommandPayload):
    dataset_id: UUID
    metadata_id: UUID
    name: str


class DeleteMetadataField(CommandPayload):
    dataset_id: UUID
    metadata_id: UUID


class ToggleBuiltInMetadataFields(CommandPayload):
    dataset_id: UUID
    enabled: bool


class MetadataValue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metadata_id: UUID
    value: str | int | float | None = None


class DocumentMetadataOperation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    document_id: UUID
    values: list[MetadataValue]
    partial_update: bool = False


class UpdateDocumentsMetadata(CommandPayload):
    """Dify's batch document metadata update: all documents change, or none."""

    dataset_id: UUID
    operations: list[DocumentMetadataOperation]


# --- knowledge: tags (workspace-scoped, type "knowledge") ------------------------------------


class CreateTag(CommandPayload):
    tag_id: UUID
    name: str


class RenameTag(CommandPayload):
    tag_id: UUID
    name: str


class DeleteTag(CommandPayload):
    tag_id: UUID


class BindTags(CommandPayload):
    target_id: UUID  # a dataset
    tag_ids: list[UUID]


class UnbindTags(CommandPayload):
    target_id: UUID
    tag_ids: list[UUID]


class RecordSegmentHits(CommandPayload):
    """What retrievals of a dataset returned, batched by the gateway (see SegmentsHit).
    `batch_id` is the new aggregate the batch is recorded as."""

    batch_id: UUID
    dataset_id: UUID
    hits: list[SegmentHits]


class AlertIndexingBacklog(CommandPayload):
    """The queue monitor found the indexing backlog at or past its threshold: an alert mail
    to each address (Dify's datasets-queue-monitor). Its command id is the monitor's window,
    so a second pass in the same window asks for nothing more."""

    alert_id: UUID  # the window's (also the command's id)
    queue_length: int
    threshold: int
    emails: list[str]
    alert_time: str  # when it was measured, as the mail shows it
