"""Read-side queries of the conversation context (plain functions over its read models)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

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
from projections.page import Page
from projections.reads import autocommit

SORT_FIELDS = ("created_at", "-created_at", "updated_at", "-updated_at")


async def _one(engine: AsyncEngine, query: Any) -> dict[str, Any] | None:
    async with autocommit(engine) as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def app_model_config(engine: AsyncEngine, app_id: UUID) -> dict[str, Any] | None:
    """The app's stored model config; None when it was never configured."""
    row = await _one(engine, select(app_model_configs.c.config)
                     .where(app_model_configs.c.app_id == app_id))
    return row["config"] if row else None


async def app_site(engine: AsyncEngine, app_id: UUID) -> dict[str, Any]:
    row = await _one(engine, select(app_sites.c.site).where(app_sites.c.app_id == app_id))
    return row["site"] if row else {}


async def end_user(engine: AsyncEngine, app_id: UUID, end_user_id: UUID) -> dict[str, Any] | None:
    return await _one(engine, select(end_users).where(
        end_users.c.id == end_user_id, end_users.c.app_id == app_id))


async def conversation(engine: AsyncEngine, app_id: UUID, end_user_id: UUID,
                       conversation_id: UUID) -> dict[str, Any] | None:
    return await _one(engine, select(conversations).where(
        conversations.c.id == conversation_id, conversations.c.app_id == app_id,
        conversations.c.end_user_id == end_user_id))


async def list_conversations(engine: AsyncEngine, app_id: UUID, end_user_id: UUID, *,
                             last_id: UUID | None, limit: int, sort_by: str) -> Page | None:
    """Dify's keyset paging: the page after `last_id` in `sort_by` order; `total` is 1 when
    there are more. None: unknown last_id."""
    column = conversations.c[sort_by.lstrip("-")]
    descending = sort_by.startswith("-")
    where = [conversations.c.app_id == app_id, conversations.c.end_user_id == end_user_id]
    async with engine.connect() as conn:
        if last_id is not None:
            last = (await conn.execute(select(column, conversations.c.id).where(
                *where, conversations.c.id == last_id))).first()
            if last is None:
                return None
            after = (or_(column < last[0], and_(column == last[0], conversations.c.id < last[1]))
                     if descending else
                     or_(column > last[0], and_(column == last[0], conversations.c.id > last[1])))
            where.append(after)
        order = (column.desc(), conversations.c.id.desc()) if descending \
            else (column.asc(), conversations.c.id.asc())
        rows = (await conn.execute(select(conversations).where(*where).order_by(*order)
                                   .limit(limit + 1))).mappings().all()
    return Page(items=[dict(r) for r in rows[:limit]], total=int(len(rows) > limit))


async def message(engine: AsyncEngine, app_id: UUID, message_id: UUID) -> dict[str, Any] | None:
    return await _one(engine, select(messages).where(
        messages.c.id == message_id, messages.c.app_id == app_id))


async def conversation_messages(engine: AsyncEngine, conversation_id: UUID, *,
                                first_id: UUID | None, limit: int) -> Page | None:
    """Dify's history paging: the `limit` messages before `first_id` (newest page first),
    each page oldest first; `total` is 1 when older ones remain. None: unknown first_id."""
    where = [messages.c.conversation_id == conversation_id]
    async with engine.connect() as conn:
        if first_id is not None:
            first = (await conn.execute(select(messages.c.created_at, messages.c.id).where(
                *where, messages.c.id == first_id))).first()
            if first is None:
                return None
            where.append(or_(messages.c.created_at < first[0],
                             and_(messages.c.created_at == first[0], messages.c.id < first[1])))
        rows = (await conn.execute(select(messages).where(*where).order_by(
            messages.c.created_at.desc(), messages.c.id.desc()).limit(limit + 1))).mappings().all()
    page = [dict(r) for r in rows[:limit]]
    page.reverse()
    return Page(items=page, total=int(len(rows) > limit))


async def app_feedbacks(engine: AsyncEngine, app_id: UUID, *, page: int, limit: int) -> Page:
    where = [messages.c.app_id == app_id, messages.c.feedback_rating.is_not(None)]
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(messages).where(*where)))
        rows = (await conn.execute(select(messages).where(*where).order_by(
            messages.c.feedback_at.desc()).offset((page - 1) * limit).limit(limit)
        )).mappings().all()
        return Page(items=[dict(r) for r in rows], total=int(total.scalar() or 0))


async def upload_file(engine: AsyncEngine, app_id: UUID, file_id: UUID) -> dict[str, Any] | None:
    """A file uploaded to this app (another app's is as unknown as a missing one)."""
    return await _one(engine, select(upload_files).where(
        upload_files.c.id == file_id, upload_files.c.app_id == app_id))


async def app_leftovers(engine: AsyncEngine, app_id: UUID) -> tuple[list[UUID], list[UUID]]:
    """An app's conversations and uploaded files (what goes when the app is deleted)."""
    async with engine.connect() as conn:
        found = (await conn.execute(select(conversations.c.id)
                                    .where(conversations.c.app_id == app_id))).scalars().all()
        files = (await conn.execute(select(upload_files.c.id)
                                    .where(upload_files.c.app_id == app_id))).scalars().all()
    return list(found), list(files)


_ANNOTATION_WITH_HITS = select(
    app_annotations, func.coalesce(annotation_hits.c.hit_count, 0).label("hit_count"),
).outerjoin(annotation_hits, annotation_hits.c.annotation_id == app_annotations.c.id)


async def list_annotations(engine: AsyncEngine, app_id: UUID, keyword: str, page: int,
                           limit: int) -> tuple[list[dict[str, Any]], int]:
    """Dify's order (newest first); a keyword matches the question or the answer."""
    where = [app_annotations.c.app_id == app_id]
    if keyword:
        where.append(or_(app_annotations.c.question.icontains(keyword, autoescape=True),
                         app_annotations.c.answer.icontains(keyword, autoescape=True)))
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(app_annotations)
                                    .where(*where))).scalar_one()
        rows = (await conn.execute(
            _ANNOTATION_WITH_HITS.where(*where)
            .order_by(app_annotations.c.created_at.desc(), app_annotations.c.id)
            .offset((page - 1) * limit).limit(limit))).mappings().all()
    return [dict(r) for r in rows], total


async def annotation(engine: AsyncEngine, app_id: UUID,
                     annotation_id: UUID) -> dict[str, Any] | None:
    return await _one(engine, _ANNOTATION_WITH_HITS.where(
        app_annotations.c.app_id == app_id, app_annotations.c.id == annotation_id))


async def annotation_reply_job(engine: AsyncEngine, app_id: UUID, action: str,
                               job_id: UUID) -> dict[str, Any] | None:
    return await _one(engine, select(annotation_reply_jobs).where(
        annotation_reply_jobs.c.app_id == app_id, annotation_reply_jobs.c.action == action,
        annotation_reply_jobs.c.id == job_id))


async def annotation_reply_setting(engine: AsyncEngine, app_id: UUID) -> dict[str, Any] | None:
    """The app's annotation reply setting; None while annotation reply is off."""
    return await _one(engine, select(annotation_reply_settings)
                      .where(annotation_reply_settings.c.app_id == app_id))
