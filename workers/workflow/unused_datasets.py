"""Dify's clean_unused_datasets_task (ENABLE_CLEAN_UNUSED_DATASETS_TASK): the documents of a
dataset nobody used for PLAN_SANDBOX_CLEAN_DAY_SETTING days are disabled, so its index no
longer serves retrieval (enabling them again brings it back; nothing is deleted).

Unused, as Dify has it: created before the window, with indexed documents all last changed
before it, and no retrieval in it (`dataset_queries`). Eddy's chat and workflow
retrievals record no query, so a dataset an app names (its model config or a workflow
version) counts as used while that app had messages or runs in the window; that is why
this job lives with the most downstream context, which may read every read model.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from sqlalchemy import ColumnElement, Text, and_, cast, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from commands.executor import execute
from commands.registry import CommandHandlers
from config import Settings
from events.store import EventStore
from projections.conversation.tables import app_model_configs, messages
from projections.knowledge.tables import dataset_queries, datasets, documents
from projections.workflow.runs.tables import workflow_runs
from projections.workflow.tables import workflow_versions
from schemas.base import CommandEnvelope
from schemas.knowledge import commands as cmd
from workers.declarations import Schedule
from workflow_graph.cron import Cron

log = logging.getLogger(__name__)


def clean_unused_datasets_schedule(settings: Settings) -> Schedule | None:
    """03:00 UTC every CELERY_BEAT_SCHEDULER_TIME days, as Dify's beat schedules it."""
    return Cron(f"0 3 */{settings.CELERY_BEAT_SCHEDULER_TIME} * *") \
        if settings.ENABLE_CLEAN_UNUSED_DATASETS_TASK else None


def _named_by_an_app_in_use(since: datetime) -> ColumnElement[bool]:
    dataset_id = cast(datasets.c.id, Text)
    chat = exists().where(
        app_model_configs.c.tenant_id == datasets.c.tenant_id,
        cast(app_model_configs.c.config, Text).contains(dataset_id),
        exists().where(messages.c.app_id == app_model_configs.c.app_id,
                       messages.c.created_at >= since))
    flow = exists().where(
        workflow_versions.c.tenant_id == datasets.c.tenant_id,
        cast(workflow_versions.c.graph, Text).contains(dataset_id),
        exists().where(workflow_runs.c.app_id == workflow_versions.c.app_id,
                       workflow_runs.c.created_at >= since))
    return or_(chat, flow)


async def clean_unused_datasets(*, settings: Settings, engine: AsyncEngine,
                                store: EventStore, handlers: CommandHandlers) -> None:
    since = datetime.now(UTC) - timedelta(days=settings.PLAN_SANDBOX_CLEAN_DAY_SETTING)
    indexed = and_(documents.c.dataset_id == datasets.c.id,
                   documents.c.indexing_status == "completed",
                   documents.c.enabled.is_(True), documents.c.archived.is_(False))
    unused = select(datasets.c.id, datasets.c.tenant_id).where(
        datasets.c.created_at < since,
        exists().where(indexed, documents.c.updated_at < since),
        ~exists().where(indexed, documents.c.updated_at >= since),
        ~exists().where(dataset_queries.c.dataset_id == datasets.c.id,
                        dataset_queries.c.last_queried_at >= since),
        ~_named_by_an_app_in_use(since))
    async with engine.connect() as conn:
        found = (await conn.execute(unused)).all()
        enabled = {dataset_id: list((await conn.execute(select(documents.c.id).where(
            documents.c.dataset_id == dataset_id, documents.c.enabled.is_(True),
            documents.c.archived.is_(False)).order_by(documents.c.id))).scalars())
            for dataset_id, _ in found}
    for dataset_id, tenant_id in found:
        await asyncio.to_thread(execute, store, handlers, CommandEnvelope.of(
            cmd.UpdateDocumentStatus(dataset_id=dataset_id, document_ids=enabled[dataset_id],
                                     action="disable"),
            aggregate_id=dataset_id, tenant_id=tenant_id, actor_id=None,
            correlation_id=uuid4()))
        log.info("unused dataset's documents disabled", extra={
            "dataset_id": str(dataset_id), "documents": len(enabled[dataset_id])})
