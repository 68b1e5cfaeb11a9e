"""Ids and names of the conversation context that the gateway, the write side, the read
side and the workers agree on: derived ids and the per-task Redis stream's keys. No I/O."""

from __future__ import annotations

from uuid import UUID, uuid5

from schemas.base import EDDY_NAMESPACE


def app_config_id_for(app_id: UUID) -> UUID:
    """The AppConfig aggregate of an app (one per app; the app's id is the App's own)."""
    return uuid5(EDDY_NAMESPACE, f"app-config:{app_id}")


def annotation_set_id_for(app_id: UUID) -> UUID:
    """The AnnotationSet aggregate of an app: its annotations and reply setting."""
    return uuid5(EDDY_NAMESPACE, f"annotation-set:{app_id}")


def annotation_collection(app_id: UUID, job_id: UUID | None = None) -> str:
    """The vector collection an enable job builds the annotated questions' index in, beside
    the one in force, which it replaces only once complete. Without a job: the one collection
    per app that jobs built before (`AnnotationReplyJobEnded` v1). Within the 61 characters
    a pgvector collection may have."""
    return f"annotations_{app_id.hex}" + (f"_{job_id.hex[:12]}" if job_id else "")


# The end user of a Service API read that names none (Dify's DefaultEndUserSessionID).
DEFAULT_END_USER = "DEFAULT-USER"


def end_user_id_for(app_id: UUID, user: str) -> UUID:
    """Dify's end user: the Service API's `user` string, scoped to its app."""
    return uuid5(EDDY_NAMESPACE, f"end-user:{app_id}:{user}")


# The per-task stream of SSE events (tokens and the closing event): short-lived, never in
# the event store. The key-value store adds the deployment's prefix.
def task_stream_key(task_id: UUID) -> str:
    return f"task.{task_id}.events"


def task_stop_key(task_id: UUID) -> str:
    """Set by any gateway process to ask the task's worker to stop; holds "app:end_user"."""
    return f"task.{task_id}.stop"


def task_owner_key(task_id: UUID) -> str:
    """"app:end_user" of a task, for reading its events back (GET …/{task_id}/events)."""
    return f"task.{task_id}.owner"


def task_owner(app_id: UUID, end_user_id: UUID) -> str:
    return f"{app_id}:{end_user_id}"


IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "svg")
AUDIO_EXTENSIONS = ("mp3", "m4a", "wav", "amr", "mpga")
VIDEO_EXTENSIONS = ("mp4", "mov", "mpeg", "webm")


def upload_key(tenant_id: UUID, file_id: UUID, extension: str) -> str:
    """Where an uploaded file's bytes are kept (the name is not trusted in a key)."""
    return f"upload_files/{tenant_id}/{file_id}.{extension}" if extension \
        else f"upload_files/{tenant_id}/{file_id}"


TERMINAL_STREAM_EVENTS = ("message_end", "error")
# On a stream entry that shows a recorded fact (a workflow run's event): that event's version
# in its aggregate. For the writers' bookkeeping (a takeover streams only what was not): the
# gateway leaves it out of what clients receive.
FACT_FIELD = "_fact"
