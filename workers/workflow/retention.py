"""Dify's clean_messages (ENABLE_CLEAN_MESSAGES): messages and ended workflow runs older
than SANDBOX_EXPIRED_RECORDS_RETENTION_DAYS leave the read models and every answer.

The job reads what is old from the read models, in batches of
SANDBOX_EXPIRED_RECORDS_CLEAN_BATCH_SIZE, and decides nothing itself: a command per
conversation (ExpireMessages) or run (ExpireWorkflowRun) records the expiry, and the
projectors delete the rows. A pass that finds rows whose expiry is not projected yet sends
their commands again, which change nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import ColumnElement, Row, Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from commands.executor import execute
from commands.registry import CommandHandlers
from config import Settings
from events.store import EventStore
from projections.conversation.tables import messages
from projections.workflow.runs.tables import workflow_runs
from schemas.base import CommandEnvelope, CommandPayload
from schemas.conversation import commands as conversation_commands
from schemas.workflow import commands as workflow_commands
from workers.declarations import Schedule
from workflow_graph.cron import Cron

log = logging.getLogger(__name__)
RUN_ENDED = ("succeeded", "failed", "stopped", "partial-succeeded")


def clean_messages_schedule(settings: Settings) -> Schedule | None:
    """04:00 UTC every CELERY_BEAT_SCHEDULER_TIME days, as Dify's beat schedules it."""
    return Cron(f"0 4 */{settings.CELERY_BEAT_SCHEDULER_TIME} * *") \
        if settings.ENABLE_CLEAN_MESSAGES else None


async def clean_messages(*, settings: Settings, engine: AsyncEngine, store: EventStore,
                         handlers: CommandHandlers) -> None:
    cutoff = datetime.now(UTC) - timedelta(days=settings.SANDBOX_EXPIRED_RECORDS_RETENTION_DAYS)
    batch = settings.SANDBOX_EXPIRED_RECORDS_CLEAN_BATCH_SIZE
    found_messages = found_runs = 0
    old_messages = select(messages.c.id, messages.c.conversation_id, messages.c.tenant_id).where(
        messages.c.created_at < cutoff, messages.c.status != "pending")
    async for rows in _batches(engine, old_messages, messages.c.id, batch):
        found_messages += len(rows)
        by_conversation: dict[tuple[UUID, UUID], list[UUID]] = defaultdict(list)
        for message_id, conversation_id, tenant_id in rows:
            by_conversation[(conversation_id, tenant_id)].append(message_id)
        for (conversation_id, tenant_id), ids in by_conversation.items():
            await _command(store, handlers, conversation_commands.ExpireMessages(
                conversation_id=conversation_id, message_ids=ids), conversation_id, tenant_id)
    old_runs = select(workflow_runs.c.id, workflow_runs.c.tenant_id).where(
        workflow_runs.c.created_at < cutoff, workflow_runs.c.status.in_(RUN_ENDED))
    async for rows in _batches(engine, old_runs, workflow_runs.c.id, batch):
        found_runs += len(rows)
        for run_id, tenant_id in rows:
            await _command(store, handlers, workflow_commands.ExpireWorkflowRun(run_id=run_id),
                           run_id, tenant_id)
    log.info("expired messages and workflow runs", extra={
        "messages": found_messages, "workflow_runs": found_runs, "before": cutoff.isoformat()})


async def _batches(engine: AsyncEngine, query: Select[Any], key: ColumnElement[UUID],
                   size: int) -> AsyncIterator[Sequence[Row[Any]]]:
    """The query's rows in pages ordered by `key` (each page's last key starts the next)."""
    after: UUID | None = None
    while True:
        page = query.order_by(key).limit(size)
        if after is not None:
            page = page.where(key > after)
        async with engine.connect() as conn:
            rows = (await conn.execute(page)).all()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


async def _command(store: EventStore, handlers: CommandHandlers, command: CommandPayload,
                   aggregate_id: UUID, tenant_id: UUID | None) -> None:
    await asyncio.to_thread(execute, store, handlers, CommandEnvelope.of(
        command, aggregate_id=aggregate_id, tenant_id=tenant_id, actor_id=None,
        correlation_id=uuid4()))
