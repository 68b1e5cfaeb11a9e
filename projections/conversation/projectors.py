"""Projectors of the conversation context into the console read model: app configuration,
end users, conversations, messages and feedback. A conversation's messages are events of
the conversation itself, so they arrive in order after it started."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.conversation.tables import (
    annotation_hits,
    annotation_reply_jobs,
    annotation_reply_settings,
    app_annotations,
    app_model_configs,
    app_sites,
    conversations,
    end_users,
    messages,
    upload_files,
)
from projections.platform.projectors import buried, bury, lock
from projections.registry import batch_state, projectors
from schemas.conversation import events as ev


async def _upsert(conn: AsyncConnection, table: Any, app_id: UUID,
                  values: dict[str, Any]) -> None:
    found = await conn.execute(select(table.c.app_id).where(table.c.app_id == app_id))
    if found.first() is None:
        await conn.execute(insert(table).values(app_id=app_id, **values))
    else:
        await conn.execute(update(table).where(table.c.app_id == app_id).values(**values))


async def project_app_model_configured(conn: AsyncConnection,
                                       e: Envelope[ev.AppModelConfigured]) -> None:
    await _upsert(conn, app_model_configs, e.payload.app_id, {
        "tenant_id": e.tenant_id, "config": e.payload.config,
        "updated_by": e.payload.updated_by, "updated_at": e.occurred_at})


async def project_app_site_configured(conn: AsyncConnection,
                                      e: Envelope[ev.AppSiteConfigured]) -> None:
    await _upsert(conn, app_sites, e.payload.app_id, {
        "tenant_id": e.tenant_id, "site": e.payload.site, "updated_at": e.occurred_at})


async def project_conversation_started(conn: AsyncConnection,
                                       e: Envelope[ev.ConversationStarted]) -> None:
    p = e.payload
    # The end user is written at the batch's end (`write_end_users`), with the earliest of
    # the batch's conversations that name it.
    seen: dict[UUID, dict[str, Any]] = batch_state().setdefault(END_USERS, {})
    known = seen.get(p.end_user_id)
    if known is None or e.occurred_at < known["created_at"]:
        seen[p.end_user_id] = {"id": p.end_user_id, "tenant_id": e.tenant_id, "app_id": p.app_id,
                               "session_id": p.user, "type": "service-api",
                               "created_at": e.occurred_at}
    await conn.execute(insert(conversations).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, app_id=p.app_id, end_user_id=p.end_user_id,
        mode=p.mode, name=p.name, inputs=p.inputs, status="normal",
        created_at=e.occurred_at, updated_at=e.occurred_at))


END_USERS = "conversation.end_users"


async def write_end_users(conn: AsyncConnection) -> None:
    """The batch's end users, one upsert in id order. An end user's conversations are other
    aggregates, projected in any order and concurrently from other partitions: the row keeps
    the earliest conversation's time, and every batch locks the rows in the same order, so
    two batches naming the same end users never deadlock."""
    seen: dict[UUID, dict[str, Any]] | None = batch_state().pop(END_USERS, None)
    if not seen:
        return
    upsert = _dialect_insert(conn, end_users)
    await conn.execute(upsert.on_conflict_do_update(
        index_elements=[end_users.c.id], set_={"created_at": upsert.excluded.created_at},
        where=upsert.excluded.created_at < end_users.c.created_at),
        [seen[i] for i in sorted(seen)])


def _dialect_insert(conn: AsyncConnection, table: Any) -> Any:
    """An INSERT that can take ON CONFLICT (the projection runs on Postgres live, on SQLite
    in a rebuild's fold)."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


async def _touch(conn: AsyncConnection, conversation_id: UUID, at: datetime) -> None:
    await conn.execute(update(conversations).where(conversations.c.id == conversation_id)
                       .values(updated_at=at))


async def project_message_created(conn: AsyncConnection, e: Envelope[ev.MessageCreated]) -> None:
    p = e.payload
    await conn.execute(insert(messages).values(
        id=p.message_id, tenant_id=e.tenant_id, app_id=p.app_id, conversation_id=e.aggregate_id,
        end_user_id=p.end_user_id, task_id=p.task_id, query=p.query, inputs=p.inputs,
        files=p.files, answer="", status="pending", retriever_resources=[],
        created_at=e.occurred_at, updated_at=e.occurred_at))
    await _touch(conn, e.aggregate_id, e.occurred_at)


async def _end_message(conn: AsyncConnection, message_id: UUID, at: datetime,
                       **values: Any) -> None:
    await conn.execute(update(messages).where(messages.c.id == message_id)
                       .values(updated_at=at, **values))


async def project_message_answered(conn: AsyncConnection,
                                   e: Envelope[ev.MessageAnswered]) -> None:
    p = e.payload
    await _end_message(conn, p.message_id, e.occurred_at, status="normal", answer=p.answer,
                       usage=p.usage, retriever_resources=p.retriever_resources,
                       latency=p.usage.get("latency"))


async def project_message_stopped(conn: AsyncConnection, e: Envelope[ev.MessageStopped]) -> None:
    p = e.payload
    await _end_message(conn, p.message_id, e.occurred_at, status="stopped", answer=p.answer,
                       usage=p.usage, latency=p.usage.get("latency"))


async def project_message_failed(conn: AsyncConnection, e: Envelope[ev.MessageFailed]) -> None:
    await _end_message(conn, e.payload.message_id, e.occurred_at, status="error",
                       error=e.payload.error)


async def project_conversation_renamed(conn: AsyncConnection,
                                       e: Envelope[ev.ConversationRenamed]) -> None:
    await conn.execute(update(conversations).where(conversations.c.id == e.aggregate_id)
                       .values(name=e.payload.name, updated_at=e.occurred_at))


async def project_conversation_deleted(conn: AsyncConnection,
                                       e: Envelope[ev.ConversationDeleted]) -> None:
    await conn.execute(delete(messages).where(messages.c.conversation_id == e.aggregate_id))
    await conn.execute(delete(conversations).where(conversations.c.id == e.aggregate_id))


async def project_messages_expired(conn: AsyncConnection,
                                   e: Envelope[ev.MessagesExpired]) -> None:
    await conn.execute(delete(messages).where(messages.c.id.in_(e.payload.message_ids)))


async def project_message_feedback_given(conn: AsyncConnection,
                                         e: Envelope[ev.MessageFeedbackGiven]) -> None:
    p = e.payload
    await conn.execute(update(messages).where(messages.c.id == p.message_id).values(
        feedback_rating=p.rating, feedback_content=p.content if p.rating else None,
        feedback_at=e.occurred_at if p.rating else None))


async def project_file_uploaded(conn: AsyncConnection, e: Envelope[ev.FileUploaded]) -> None:
    p = e.payload
    await conn.execute(insert(upload_files).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, app_id=p.app_id, end_user_id=p.end_user_id,
        name=p.name, size=p.size, extension=p.extension, mime_type=p.mime_type, key=p.key,
        created_at=e.occurred_at))


async def project_file_deleted(conn: AsyncConnection, e: Envelope[ev.FileDeleted]) -> None:
    await conn.execute(delete(upload_files).where(upload_files.c.id == e.aggregate_id))


async def project_annotation_created(conn: AsyncConnection,
                                     e: Envelope[ev.AnnotationCreated]) -> None:
    p = e.payload
    await conn.execute(insert(app_annotations).values(
        id=p.annotation_id, tenant_id=e.tenant_id, app_id=p.app_id, question=p.question,
        answer=p.answer, created_at=e.occurred_at))


async def project_annotation_updated(conn: AsyncConnection,
                                     e: Envelope[ev.AnnotationUpdated]) -> None:
    p = e.payload
    await conn.execute(update(app_annotations).where(app_annotations.c.id == p.annotation_id)
                       .values(question=p.question, answer=p.answer))


async def project_annotation_deleted(conn: AsyncConnection,
                                     e: Envelope[ev.AnnotationDeleted]) -> None:
    """With its hit history (Dify's too); hits still on their way stay out (tombstone)."""
    annotation_id = e.payload.annotation_id
    await lock(conn, annotation_id, exclusive=True)
    await bury(conn, annotation_id, "Annotation", e.occurred_at)
    await conn.execute(delete(annotation_hits)
                       .where(annotation_hits.c.annotation_id == annotation_id))
    await conn.execute(delete(app_annotations).where(app_annotations.c.id == annotation_id))


async def project_annotation_hit(conn: AsyncConnection, e: Envelope[ev.AnnotationHit]) -> None:
    # Counted at the batch's end (`write_annotation_hits`), with the batch's other hits.
    hits: dict[UUID, tuple[UUID, int]] = batch_state().setdefault(ANNOTATION_HITS, {})
    _, count = hits.get(e.payload.annotation_id, (e.payload.app_id, 0))
    hits[e.payload.annotation_id] = (e.payload.app_id, count + 1)


ANNOTATION_HITS = "conversation.annotation_hits"


async def write_annotation_hits(conn: AsyncConnection) -> None:
    """The batch's hits, one upsert adding each annotation's count, in id order. Hits are
    events of conversations (other aggregates, projected concurrently from other partitions):
    every batch takes the annotations' locks and rows in the same order, so two batches
    hitting the same annotations never deadlock. A hit of a deleted annotation stays out."""
    hits: dict[UUID, tuple[UUID, int]] | None = batch_state().pop(ANNOTATION_HITS, None)
    if not hits:
        return
    for annotation_id in sorted(hits):
        await lock(conn, annotation_id)
    gone = await buried(conn, hits)
    rows = [{"annotation_id": i, "app_id": hits[i][0], "hit_count": hits[i][1]}
            for i in sorted(hits) if i not in gone]
    if not rows:
        return
    upsert = _dialect_insert(conn, annotation_hits)
    await conn.execute(upsert.on_conflict_do_update(
        index_elements=[annotation_hits.c.annotation_id],
        set_={"hit_count": annotation_hits.c.hit_count + upsert.excluded.hit_count}), rows)


async def project_annotation_reply_requested(
        conn: AsyncConnection, e: Envelope[ev.AnnotationReplyRequested]) -> None:
    p = e.payload
    await conn.execute(insert(annotation_reply_jobs).values(
        id=p.job_id, app_id=p.app_id, action=p.action, status="waiting", error="",
        score_threshold=p.score_threshold, embedding_provider_name=p.embedding_provider_name,
        embedding_model_name=p.embedding_model_name, created_at=e.occurred_at))


async def project_annotation_reply_job_started(
        conn: AsyncConnection, e: Envelope[ev.AnnotationReplyJobStarted]) -> None:
    await conn.execute(update(annotation_reply_jobs)
                       .where(annotation_reply_jobs.c.id == e.payload.job_id)
                       .values(status="processing"))


async def project_annotation_reply_job_ended(
        conn: AsyncConnection, e: Envelope[ev.AnnotationReplyJobEnded]) -> None:
    """A completed job puts its setting in force (enable) or removes it (disable)."""
    p = e.payload
    job = (await conn.execute(update(annotation_reply_jobs)
                              .where(annotation_reply_jobs.c.id == p.job_id)
                              .values(status=p.status, error=p.error)
                              .returning(*annotation_reply_jobs.c))).mappings().one()
    if p.status != "completed":
        return
    await conn.execute(delete(annotation_reply_settings)
                       .where(annotation_reply_settings.c.app_id == p.app_id))
    if job["action"] == "enable":
        await conn.execute(insert(annotation_reply_settings).values(
            app_id=p.app_id, score_threshold=job["score_threshold"],
            embedding_provider_name=job["embedding_provider_name"],
            embedding_model_name=job["embedding_model_name"], collection=p.collection,
            updated_at=e.occurred_at))


PROJECTORS = projectors(
    project_app_model_configured, project_app_site_configured, project_conversation_started,
    project_message_created, project_message_answered, project_message_stopped,
    project_message_failed, project_conversation_renamed, project_conversation_deleted,
    project_messages_expired, project_message_feedback_given, project_file_uploaded,
    project_file_deleted,
    project_annotation_created, project_annotation_updated, project_annotation_deleted,
    project_annotation_hit, project_annotation_reply_requested,
    project_annotation_reply_job_started, project_annotation_reply_job_ended,
    after_apply=[write_end_users, write_annotation_hits],
)
