"""Projectors of drafts and versions into the console read model. A draft's row is
replaced by each save (it keeps when it was first saved, as Dify's draft row does)."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.platform.projectors import lock
from projections.registry import projectors
from projections.workflow.tables import published_workflows, workflow_drafts, workflow_versions
from projections.workflow.triggers import sync_triggers
from schemas.workflow import events as ev
from schemas.workflow.naming import published_workflow_id_for


async def project_workflow_draft_synced(conn: AsyncConnection,
                                        e: Envelope[ev.WorkflowDraftSynced]) -> None:
    p = e.payload
    values = {"graph": p.graph, "features": p.features,
              "environment_variables": p.environment_variables,
              "conversation_variables": p.conversation_variables, "hash": p.hash,
              "dependencies": p.dependencies,
              "updated_by": p.synced_by, "updated_at": e.occurred_at}
    found = await conn.execute(select(workflow_drafts.c.app_id)
                               .where(workflow_drafts.c.app_id == p.app_id))
    if found.first() is None:
        await conn.execute(insert(workflow_drafts).values(
            app_id=p.app_id, id=e.aggregate_id, tenant_id=e.tenant_id,
            created_by=p.synced_by, created_at=e.occurred_at, **values))
    else:
        await conn.execute(update(workflow_drafts)
                           .where(workflow_drafts.c.app_id == p.app_id).values(**values))


async def project_workflow_version_created(conn: AsyncConnection,
                                           e: Envelope[ev.WorkflowVersionCreated]) -> None:
    p = e.payload
    await conn.execute(insert(workflow_versions).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, app_id=p.app_id, kind=p.kind,
        version=p.version, graph=p.graph, features=p.features,
        environment_variables=p.environment_variables,
        conversation_variables=p.conversation_variables, marked_name=p.marked_name,
        marked_comment=p.marked_comment, created_by=p.created_by, created_at=e.occurred_at))
    if p.kind != "workflow":
        return
    await _publishing(conn, p.app_id)
    if await conn.scalar(select(published_workflows.c.app_id).where(
            published_workflows.c.workflow_id == e.aggregate_id)) is not None:
        await sync_triggers(conn, p.app_id)  # its publish was applied first


async def _publishing(conn: AsyncConnection, app_id: UUID) -> None:
    """A publish writes two aggregates (the app's published workflow, the new version),
    which other transactions may project at once; whichever comes second syncs the
    triggers. Taking one lock per app first makes the second see the first's commit:
    without it each could miss the other and the triggers never be synced."""
    await lock(conn, published_workflow_id_for(app_id), exclusive=True)


async def project_workflow_published(conn: AsyncConnection,
                                     e: Envelope[ev.WorkflowPublished]) -> None:
    p = e.payload
    await _publishing(conn, p.app_id)
    values = {"workflow_id": p.workflow_id, "published_by": p.published_by,
              "published_at": e.occurred_at}
    found = await conn.execute(select(published_workflows.c.app_id)
                               .where(published_workflows.c.app_id == p.app_id))
    if found.first() is None:
        await conn.execute(insert(published_workflows).values(app_id=p.app_id, **values))
    else:
        await conn.execute(update(published_workflows)
                           .where(published_workflows.c.app_id == p.app_id).values(**values))
    await sync_triggers(conn, p.app_id)


async def project_workflow_environment_resealed(
        conn: AsyncConnection, e: Envelope[ev.WorkflowEnvironmentResealed]) -> None:
    # A draft's row is keyed by its app, a version's by its id; each aggregate has one.
    table, key = ((workflow_drafts, workflow_drafts.c.id) if e.aggregate_type == "WorkflowDraft"
                  else (workflow_versions, workflow_versions.c.id))
    await conn.execute(update(table).where(key == e.aggregate_id).values(
        environment_variables=e.payload.environment_variables))


PROJECTORS = projectors(project_workflow_draft_synced, project_workflow_version_created,
                        project_workflow_published, project_workflow_environment_resealed)
