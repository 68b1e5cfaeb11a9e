"""Command payloads of the conversation context."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from schemas.base import CommandPayload


class ConfigureAppModel(CommandPayload):
    app_id: UUID
    config: dict[str, Any]  # AppModelConfig, validated and normalised by the gateway


class ConfigureAppSite(CommandPayload):
    app_id: UUID
    changes: dict[str, Any]  # the SiteSettings fields sent


class SendMessage(CommandPayload):
    """Ask a question: starts the conversation when `new_conversation`."""

    conversation_id: UUID
    message_id: UUID
    task_id: UUID
    app_id: UUID
    mode: str
    user: str
    query: str
    inputs: dict[str, Any]
    config: dict[str, Any]
    new_conversation: bool
    files: list[dict[str, Any]] = []


class RecordFileUpload(CommandPayload):
    """A file the gateway stored for an end user (Service API /files/upload)."""

    file_id: UUID
    app_id: UUID
    user: str
    name: str
    size: int
    extension: str
    mime_type: str
    key: str


class DeleteFileRecord(CommandPayload):
    """`eddy clear-orphaned-file-records`: an upload's record goes (its bytes, if any are
    left, are `eddy remove-orphaned-files-on-storage`'s)."""

    file_id: UUID


class RenameConversation(CommandPayload):
    conversation_id: UUID
    app_id: UUID
    user: str
    name: str


class ExpireMessages(CommandPayload):
    """The retention job's: these messages of the conversation are past the retention."""

    conversation_id: UUID
    message_ids: list[UUID]


class DeleteConversation(CommandPayload):
    conversation_id: UUID
    app_id: UUID
    user: str


class GiveMessageFeedback(CommandPayload):
    conversation_id: UUID
    message_id: UUID
    app_id: UUID
    user: str
    rating: Literal["like", "dislike"] | None
    content: str | None = None


class CreateAnnotation(CommandPayload):
    app_id: UUID
    annotation_id: UUID
    question: str
    answer: str


class UpdateAnnotation(CommandPayload):
    app_id: UUID
    annotation_id: UUID
    question: str
    answer: str


class DeleteAnnotation(CommandPayload):
    app_id: UUID
    annotation_id: UUID


class ConfigureAnnotationReply(CommandPayload):
    """Start job `job_id`: enable or disable annotation reply (Dify's body is required for
    both actions)."""

    app_id: UUID
    job_id: UUID
    action: Literal["enable", "disable"]
    score_threshold: float
    embedding_provider_name: str
    embedding_model_name: str
