"""Read-side queries of drafts and versions (plain functions over the workflow read model).
Rows come back as dicts; secret environment variables in them are sealed."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.workflow.tables import published_workflows, workflow_drafts, workflow_versions


async def _one(engine: AsyncEngine, query: Any) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def workflow_draft(engine: AsyncEngine, app_id: UUID) -> dict[str, Any] | None:
    """The app's saved draft; None when none was saved (the app has its mode's default)."""
    return await _one(engine, select(workflow_drafts).where(workflow_drafts.c.app_id == app_id))


async def workflow_version(engine: AsyncEngine, app_id: UUID,
                           workflow_id: UUID) -> dict[str, Any] | None:
    """One version of the app's workflow (published, or a draft run's snapshot)."""
    return await _one(engine, select(workflow_versions).where(
        workflow_versions.c.id == workflow_id, workflow_versions.c.app_id == app_id))


async def published_workflow(engine: AsyncEngine, app_id: UUID) -> dict[str, Any] | None:
    """The version the app runs, with when it was published; None before a first publish."""
    return await _one(engine, select(workflow_versions, published_workflows.c.published_at)
                      .join(published_workflows,
                            published_workflows.c.workflow_id == workflow_versions.c.id)
                      .where(published_workflows.c.app_id == app_id))


async def published_versions(engine: AsyncEngine, app_id: UUID, *, page: int, limit: int,
                             named_only: bool = False,
                             created_by: UUID | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Dify's version history: published versions, newest first; and whether more follow."""
    v = workflow_versions.c
    query = select(workflow_versions).where(v.app_id == app_id, v.kind == "workflow")
    if named_only:
        query = query.where(v.marked_name != "")
    if created_by is not None:
        query = query.where(v.created_by == created_by)
    query = query.order_by(v.created_at.desc(), v.id).offset((page - 1) * limit).limit(limit + 1)
    async with engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return rows[:limit], len(rows) > limit
