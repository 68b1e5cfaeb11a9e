"""Dify's datasets-queue-monitor: an alert mail when the indexing backlog reaches
QUEUE_MONITOR_THRESHOLD, to each of QUEUE_MONITOR_ALERT_EMAILS.

The backlog is what the indexing consumer groups have not handled of what was relayed to
them (Dify measured its Celery queue's length). The alert is a command whose id is the
monitor's window (QUEUE_MONITOR_INTERVAL): while the backlog lasts, one mail per address
per window, however many passes (a caught-up tick, two leaders for a moment) see it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from uuid import uuid4, uuid5

from sqlalchemy.ext.asyncio import AsyncEngine

from commands.executor import execute
from commands.registry import CommandHandlers
from config import Settings
from events.consumer_groups import work_backlog
from events.store import EventStore
from schemas.base import EDDY_NAMESPACE, CommandEnvelope
from schemas.knowledge import commands as cmd
from schemas.knowledge.naming import INDEXING_BULK_TOPIC, INDEXING_PRIORITY_TOPIC
from workers.declarations import Schedule

log = logging.getLogger(__name__)
JOB_NAME = "datasets-queue-monitor"


def queue_monitor_schedule(settings: Settings) -> Schedule | None:
    return settings.QUEUE_MONITOR_INTERVAL * 60 if settings.ENABLE_DATASETS_QUEUE_MONITOR \
        else None


async def monitor_datasets_queue(*, settings: Settings, engine: AsyncEngine,
                                 store: EventStore, handlers: CommandHandlers) -> None:
    length = await work_backlog(engine, [INDEXING_PRIORITY_TOPIC, INDEXING_BULK_TOPIC])
    threshold = settings.QUEUE_MONITOR_THRESHOLD
    log.info("indexing backlog", extra={"queue_length": length, "threshold": threshold})
    emails = [e.strip() for e in settings.QUEUE_MONITOR_ALERT_EMAILS.split(",") if e.strip()]
    if length < threshold:
        return
    log.warning("indexing backlog past the threshold",
                extra={"queue_length": length, "threshold": threshold})
    if not emails:
        return
    now = time.time()
    window = int(now // (settings.QUEUE_MONITOR_INTERVAL * 60))
    alert_id = uuid5(EDDY_NAMESPACE, f"{JOB_NAME}:{window}")
    command = cmd.AlertIndexingBacklog(
        alert_id=alert_id, queue_length=length, threshold=threshold, emails=emails,
        alert_time=datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S"))
    await asyncio.to_thread(execute, store, handlers, CommandEnvelope.of(
        command, aggregate_id=alert_id, tenant_id=None, actor_id=None,
        correlation_id=uuid4(), command_id=alert_id))
