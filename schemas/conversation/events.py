"""Event payloads of the conversation context: app configuration, conversations and their
messages. Token chunks are not events (they travel on the task's Redis stream); a
message's durable facts are."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from schemas.base import EventPayload, Upcaster
from schemas.conversation.naming import annotation_collection

# --- app configuration (aggregate AppConfig, one per app) ----------------------------------


class AppModelConfigured(EventPayload):
    app_id: UUID
    config: dict[str, Any]  # AppModelConfig, normalised
    updated_by: UUID


class AppSiteConfigured(EventPayload):
    app_id: UUID
    site: dict[str, Any]  # the SiteSettings fields set so far
    updated_by: UUID


# --- conversations and their messages (aggregate Conversation) ------------------------------


class ConversationStarted(EventPayload):
    app_id: UUID
    end_user_id: UUID
    user: str  # the Service API's `user` the end user is known by
    mode: str  # the app's mode
    name: str
    inputs: dict[str, Any]


class MessageCreated(EventPayload):
    """A question to answer: the chat processor's work. `config` is the app's model config
    as it was when asked (credentials are resolved by the worker, never carried here)."""

    message_id: UUID
    task_id: UUID
    app_id: UUID
    end_user_id: UUID
    mode: str
    query: str
    inputs: dict[str, Any]
    config: dict[str, Any]
    files: list[dict[str, Any]] = []


class MessageAnswered(EventPayload):
    message_id: UUID
    answer: str
    usage: dict[str, Any]  # Dify's Usage: tokens, prices, currency, latency
    retriever_resources: list[dict[str, Any]] = []


class MessageStopped(EventPayload):
    """Stopped by its user (POST …/{task_id}/stop): the answer so far is kept."""

    message_id: UUID
    answer: str
    usage: dict[str, Any]


class MessageFailed(EventPayload):
    message_id: UUID
    code: str
    status: int
    error: str


class ConversationRenamed(EventPayload):
    name: str


class ConversationDeleted(EventPayload):
    pass


class MessagesExpired(EventPayload):
    """Past the retention (ENABLE_CLEAN_MESSAGES, SANDBOX_EXPIRED_RECORDS_RETENTION_DAYS):
    these messages leave the read models, the answers and the model's memory of the
    conversation. Their events stay in the store (README: retention)."""

    message_ids: list[UUID]


class MessageFeedbackGiven(EventPayload):
    """rating None withdraws the feedback."""

    message_id: UUID
    rating: str | None
    content: str | None = None


# --- files uploaded for messages (aggregate UploadFile) -------------------------------------


class FileUploaded(EventPayload):
    app_id: UUID
    end_user_id: UUID
    name: str
    size: int
    extension: str
    mime_type: str
    key: str  # where the storage holds it


class FileDeleted(EventPayload):
    """Its app was deleted (the stored bytes are gone), or `eddy clear-orphaned-file-records`
    cleared the record of a file that was gone or that nothing referenced."""


# --- an app's annotations and their reply setting (aggregate AnnotationSet, one per app) ----


class AnnotationCreated(EventPayload):
    app_id: UUID
    annotation_id: UUID
    question: str
    answer: str


class AnnotationUpdated(EventPayload):
    app_id: UUID
    annotation_id: UUID
    question: str
    answer: str


class AnnotationDeleted(EventPayload):
    app_id: UUID
    annotation_id: UUID


class AnnotationReplyRequested(EventPayload):
    """Annotation reply to be enabled (the app's annotations embedded into its collection)
    or disabled; the annotation worker's job `job_id`."""

    app_id: UUID
    job_id: UUID
    action: str  # enable | disable
    score_threshold: float
    embedding_provider_name: str
    embedding_model_name: str


class AnnotationReplyJobStarted(EventPayload):
    app_id: UUID
    job_id: UUID


class AnnotationReplyJobEnded(EventPayload):
    """status completed: the request's setting is in force; error: nothing changed. v2
    names the collection a completed enable job built and switched to (v1's jobs all built
    the app's one collection, dropping the one in force first)."""

    schema_version = 2
    app_id: UUID
    job_id: UUID
    status: str  # completed | error
    error: str = ""
    collection: str = ""  # in force from now on (a completed enable job); else ""


class AnnotationHit(EventPayload):
    """A question answered with the annotation instead of the model: an event of the
    message's conversation, recorded with its MessageAnswered."""

    app_id: UUID
    annotation_id: UUID
    message_id: UUID
    question: str
    score: float


def _annotation_reply_job_ended_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    completed = payload["status"] == "completed"
    return {**payload,
            "collection": annotation_collection(UUID(str(payload["app_id"]))) if completed
            else ""}


UPCASTERS: dict[tuple[type[EventPayload], int], Upcaster] = {
    (AnnotationReplyJobEnded, 1): _annotation_reply_job_ended_v1_to_v2,
}
