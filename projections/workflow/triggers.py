"""The trigger nodes of published workflows, as the schedule poller and the webhook route read
them: on each publish the app's rows are replaced by its new version's trigger nodes (a
schedule's first fire time is its first tick after the publish); a scheduled run's start
moves its schedule's next fire time past the run's tick. Both follow from the events alone,
so every rebuild has the same rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events.envelope import Envelope
from projections.platform.tables import apps, workspace_members
from projections.workflow.tables import (
    published_workflows,
    workflow_schedules,
    workflow_versions,
    workflow_webhooks,
)
from schemas.workflow import events as ev
from schemas.workflow.naming import trigger_id_for
from workflow_graph.cron import Cron
from workflow_graph.triggers import (
    TRIGGER_SCHEDULE,
    TriggerConfigError,
    schedule_of,
    trigger_nodes,
)

log = logging.getLogger(__name__)


async def sync_triggers(conn: AsyncConnection, app_id: UUID) -> None:
    """The app's trigger rows become its published version's trigger nodes. Called when the
    publish or the version is applied, whichever comes second (they are other aggregates,
    applied in any order): until both are, the app keeps no rows."""
    published = (await conn.execute(
        select(published_workflows.c.published_at, workflow_versions.c.id,
               workflow_versions.c.tenant_id, workflow_versions.c.graph)
        .join(workflow_versions, workflow_versions.c.id == published_workflows.c.workflow_id)
        .where(published_workflows.c.app_id == app_id))).mappings().first()
    await conn.execute(delete(workflow_schedules).where(workflow_schedules.c.app_id == app_id))
    await conn.execute(delete(workflow_webhooks).where(workflow_webhooks.c.app_id == app_id))
    if published is None:
        return
    of_version = {"app_id": app_id, "tenant_id": published["tenant_id"],
                  "workflow_id": published["id"]}
    for node_id, node_type, data in trigger_nodes(published["graph"]):
        if node_type == TRIGGER_SCHEDULE:
            try:  # checked when the draft was saved; a bad one never fires
                cron = schedule_of(node_id, data)
            except TriggerConfigError:
                log.warning("unreadable schedule not armed",
                            extra={"app_id": str(app_id), "node_id": node_id})
                continue
            # its first tick after the publish: publishing never fires a tick gone by
            await conn.execute(insert(workflow_schedules).values(
                node_id=node_id, cron_expression=cron.expression, timezone=cron.timezone,
                next_fire_at=cron.next_after(_utc(published["published_at"])), **of_version))
        else:
            await conn.execute(insert(workflow_webhooks).values(
                id=trigger_id_for(app_id, node_id), node_id=node_id, config=data,
                created_at=published["published_at"], **of_version))


async def schedule_fired(conn: AsyncConnection, e: Envelope[ev.WorkflowRunStarted]) -> None:
    """A scheduled run started: its schedule's next fire time is the tick after the run's
    (never moved back: runs of one schedule may be applied in any order)."""
    p = e.payload
    if p.root_node_id is None or p.scheduled_at is None:
        return
    row = (await conn.execute(select(workflow_schedules).where(
        workflow_schedules.c.app_id == p.app_id,
        workflow_schedules.c.node_id == p.root_node_id))).mappings().first()
    if row is None:
        return
    following = Cron(row["cron_expression"], row["timezone"]).next_after(p.scheduled_at)
    if following > _utc(row["next_fire_at"]):
        await conn.execute(update(workflow_schedules).where(
            workflow_schedules.c.app_id == p.app_id,
            workflow_schedules.c.node_id == p.root_node_id).values(next_fire_at=following))


def _utc(moment: datetime) -> datetime:
    # a rebuild folds into SQLite, whose timestamps come back naive (written as UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- queries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueSchedule:
    app_id: UUID
    node_id: str
    tenant_id: UUID
    cron: Cron
    next_fire_at: datetime
    owner_id: UUID | None  # who the run is made by: the workspace's owner (Dify's)


async def due_schedules(engine: AsyncEngine, now: datetime, limit: int,
                        after: tuple[datetime, UUID, str] | None = None) -> list[DueSchedule]:
    """Schedules of existing apps whose next fire time has come, the most overdue first;
    `after`: past this one's (next fire time, app, node)."""
    owner = (select(workspace_members.c.account_id)
             .where(workspace_members.c.workspace_id == workflow_schedules.c.tenant_id,
                    workspace_members.c.role == "owner").limit(1).scalar_subquery())
    order = (workflow_schedules.c.next_fire_at, workflow_schedules.c.app_id,
             workflow_schedules.c.node_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(workflow_schedules, owner.label("owner_id"))
            .join(apps, apps.c.id == workflow_schedules.c.app_id)
            .where(workflow_schedules.c.next_fire_at <= now, *([] if after is None else [
                tuple_(*order) > tuple_(*map(literal, after))]))
            .order_by(*order).limit(limit))).mappings().all()
    return [DueSchedule(app_id=r["app_id"], node_id=r["node_id"], tenant_id=r["tenant_id"],
                        cron=Cron(r["cron_expression"], r["timezone"]),
                        next_fire_at=r["next_fire_at"], owner_id=r["owner_id"]) for r in rows]


async def webhook(engine: AsyncEngine, webhook_id: UUID) -> dict[str, Any] | None:
    """A published webhook trigger node of an existing app."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(workflow_webhooks).join(apps, apps.c.id == workflow_webhooks.c.app_id)
            .where(workflow_webhooks.c.id == webhook_id))).mappings().first()
    return dict(row) if row else None


async def webhook_of_node(engine: AsyncEngine, app_id: UUID,
                          node_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(workflow_webhooks).where(
            workflow_webhooks.c.app_id == app_id,
            workflow_webhooks.c.node_id == node_id))).mappings().first()
    return dict(row) if row else None


async def triggers_of_app(engine: AsyncEngine, app_id: UUID) -> list[dict[str, Any]]:
    """The trigger nodes of the app's published version: type, title, node id and when they
    were published."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(published_workflows.c.published_at, workflow_versions.c.graph)
            .join(workflow_versions, workflow_versions.c.id == published_workflows.c.workflow_id)
            .where(published_workflows.c.app_id == app_id))).mappings().first()
    if row is None:
        return []
    return [{"trigger_type": node_type, "title": str(data.get("title") or ""),
             "node_id": node_id, "created_at": row["published_at"]}
            for node_id, node_type, data in trigger_nodes(row["graph"])]
