"""Command payloads (what the gateway asks the write side to do) and the command envelope."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict

from schemas.events import SourceFile

AppMode = Literal["completion", "chat", "advanced-chat", "agent-chat", "workflow"]


class CommandPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    command_type: ClassVar[str]


class SetupPlatform(CommandPayload):
    command_type = "SetupPlatform"
    account_id: UUID
    workspace_id: UUID
    email: str
    name: str
    password_hash: str
    interface_language: str = "en-US"


class CreateApp(CommandPayload):
    command_type = "CreateApp"
    app_id: UUID
    name: str
    mode: AppMode
    description: str = ""
    icon_type: str = "emoji"
    icon: str = "🤖"
    icon_background: str = "#FFEAD5"


class UpdateApp(CommandPayload):
    command_type = "UpdateApp"
    app_id: UUID
    name: str | None = None
    description: str | None = None
    icon_type: str | None = None
    icon: str | None = None
    icon_background: str | None = None


class DeleteApp(CommandPayload):
    command_type = "DeleteApp"
    app_id: UUID


class CreateApiKey(CommandPayload):
    command_type = "CreateApiKey"
    key_id: UUID
    key_type: Literal["app", "dataset"]
    app_id: UUID | None = None
    token: str


class RevokeApiKey(CommandPayload):
    command_type = "RevokeApiKey"
    key_id: UUID
    key_type: Literal["app", "dataset"]
    app_id: UUID | None = None


@dataclass(frozen=True)
class CommandEnvelope:
    command_id: UUID
    type: str
    aggregate_id: UUID  # the partition key: one aggregate's commands are handled in order
    tenant_id: UUID | None
    actor_id: UUID | None
    correlation_id: UUID
    payload: dict[str, Any]
    issued_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(
        cls,
        payload: CommandPayload,
        *,
        aggregate_id: UUID,
        tenant_id: UUID | None,
        actor_id: UUID | None,
        correlation_id: UUID,
        command_id: UUID | None = None,
    ) -> CommandEnvelope:
        return cls(
            command_id=command_id or uuid4(),
            type=payload.command_type,
            aggregate_id=aggregate_id,
            tenant_id=tenant_id,
            actor_id=actor_id,
            correlation_id=correlation_id,
            payload=payload.model_dump(mode="json"),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__, default=str)

    @classmethod
    def from_json(cls, data: bytes) -> CommandEnvelope:
        raw = orjson.loads(data)

        def _uuid(value: str | None) -> UUID | None:
            return UUID(value) if value else None

        return cls(
            command_id=UUID(raw["command_id"]),
            type=raw["type"],
            aggregate_id=UUID(raw["aggregate_id"]),
            tenant_id=_uuid(raw["tenant_id"]),
            actor_id=_uuid(raw["actor_id"]),
            correlation_id=UUID(raw["correlation_id"]),
            payload=raw["payload"],
            issued_at=datetime.fromisoformat(raw["issued_at"]),
        )


# --- knowledge ------------------------------------------------------------------------------


class CreateDataset(CommandPayload):
    command_type = "CreateDataset"
    dataset_id: UUID
    name: str
    description: str = ""
    indexing_technique: Literal["high_quality", "economy"] | None = None
    permission: str = "only_me"
    embedding_model: str | None = None
    embedding_model_provider: str | None = None
    retrieval_model: dict[str, Any]


class UpdateDataset(CommandPayload):
    command_type = "UpdateDataset"
    dataset_id: UUID
    name: str | None = None
    description: str | None = None
    indexing_technique: Literal["high_quality", "economy"] | None = None
    permission: str | None = None
    embedding_model: str | None = None
    embedding_model_provider: str | None = None
    retrieval_model: dict[str, Any] | None = None


class DeleteDataset(CommandPayload):
    command_type = "DeleteDataset"
    dataset_id: UUID


class CreateDocument(CommandPayload):
    command_type = "CreateDocument"
    dataset_id: UUID
    document_id: UUID
    name: str
    position: int
    batch: str
    source: SourceFile
    doc_form: str = "text_model"
    doc_language: str = "English"
    process_rule: dict[str, Any]
    indexing_technique: Literal["high_quality", "economy"]
    lane: Literal["priority", "bulk"]


class ReplaceDocumentSource(CommandPayload):
    command_type = "ReplaceDocumentSource"
    dataset_id: UUID
    document_id: UUID
    name: str | None = None
    source: SourceFile
    process_rule: dict[str, Any] | None = None
    lane: Literal["priority", "bulk"]


class ControlDocumentIndexing(CommandPayload):
    """pause / resume / retry / reindex one or more documents of a dataset."""

    command_type = "ControlDocumentIndexing"
    dataset_id: UUID
    document_ids: list[UUID]
    action: Literal["pause", "resume", "retry", "reindex"]


class UpdateDocumentStatus(CommandPayload):
    command_type = "UpdateDocumentStatus"
    dataset_id: UUID
    document_ids: list[UUID]
    action: Literal["enable", "disable", "archive", "un_archive"]


class RenameDocument(CommandPayload):
    command_type = "RenameDocument"
    dataset_id: UUID
    document_id: UUID
    name: str


class DeleteDocument(CommandPayload):
    command_type = "DeleteDocument"
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
    command_type = "CreateSegments"
    dataset_id: UUID
    document_id: UUID
    first_position: int
    segments: list[NewSegment]


class UpdateSegment(CommandPayload):
    command_type = "UpdateSegment"
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
    command_type = "DeleteSegment"
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID


# --- knowledge: child chunks of hierarchical (parent-child) documents ------------------------


class CreateChildChunk(CommandPayload):
    command_type = "CreateChildChunk"
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID
    child_chunk_id: UUID
    content: str


class UpdateChildChunk(CommandPayload):
    command_type = "UpdateChildChunk"
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID
    child_chunk_id: UUID
    content: str


class DeleteChildChunk(CommandPayload):
    command_type = "DeleteChildChunk"
    dataset_id: UUID
    document_id: UUID
    segment_id: UUID
    child_chunk_id: UUID


# --- knowledge: metadata fields and document metadata values ---------------------------------


class AddMetadataField(CommandPayload):
    command_type = "AddMetadataField"
    dataset_id: UUID
    metadata_id: UUID
    name: str
    type: Literal["string", "number", "time"]


class RenameMetadataField(CommandPayload):
    command_type = "RenameMetadataField"
    dataset_id: UUID
    metadata_id: UUID
    name: str


class DeleteMetadataField(CommandPayload):
    command_type = "DeleteMetadataField"
    dataset_id: UUID
    metadata_id: UUID


class ToggleBuiltInMetadataFields(CommandPayload):
    command_type = "ToggleBuiltInMetadataFields"
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

    command_type = "UpdateDocumentsMetadata"
    dataset_id: UUID
    operations: list[DocumentMetadataOperation]


# --- knowledge: tags (workspace-scoped, type "knowledge") ------------------------------------


class CreateTag(CommandPayload):
    command_type = "CreateTag"
    tag_id: UUID
    name: str


class RenameTag(CommandPayload):
    command_type = "RenameTag"
    tag_id: UUID
    name: str


class DeleteTag(CommandPayload):
    command_type = "DeleteTag"
    tag_id: UUID


class BindTags(CommandPayload):
    command_type = "BindTags"
    target_id: UUID  # a dataset
    tag_ids: list[UUID]


class UnbindTags(CommandPayload):
    command_type = "UnbindTags"
    target_id: UUID
    tag_ids: list[UUID]
