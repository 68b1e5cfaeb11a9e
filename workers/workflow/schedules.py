"""Schedule triggers (Dify's `poll_workflow_schedules`, its `schedule_poller` and
`schedule_executor` queues): a scheduler job that starts the runs of the published schedules
whose next fire time has come.

Each due schedule starts one run, of the latest tick at or before now: a schedule whose
scheduler was down for several ticks fires once, not once per missed tick. The run's ids (and
the command's) follow from (app, node, tick), so a second scheduler, a pass cut short and
run again, or a pass that reads a schedule before its last run moved it on, all start the
tick's run that exists already: the run's aggregate records its start once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from uuid import uuid5
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from commands.executor import execute
from commands.registry import CommandHandlers
from config import Settings
from events.store import EventStore
from projections.workflow.triggers import DueSchedule, due_schedules
from schemas.base import CommandEnvelope
from schemas.workflow import commands as cmd
from schemas.workflow.naming import scheduled_run_ids
from workers.declarations import Schedule
from workflow_graph.triggers import schedule_inputs

log = logging.getLogger(__name__)
BATCH = 100  # Dify's WORKFLOW_SCHEDULE_POLLER_BATCH_SIZE


def poller_schedule(settings: Settings) -> Schedule | None:
    """Every WORKFLOW_SCHEDULE_POLLER_INTERVAL minutes (a tick's run starts at most that
    late), unless ENABLE_WORKFLOW_SCHEDULE_POLLER_TASK switches the poller off."""
    return settings.WORKFLOW_SCHEDULE_POLLER_INTERVAL * 60 \
        if settings.ENABLE_WORKFLOW_SCHEDULE_POLLER_TASK else None


async def poll_workflow_schedules(*, engine: AsyncEngine, store: EventStore,
                                  handlers: CommandHandlers) -> None:
    """The scheduler job: the runs of the schedules due now."""
    await fire_due_schedules(engine, store, handlers, datetime.now(UTC))


async def fire_due_schedules(engine: AsyncEngine, store: EventStore,
                             handlers: CommandHandlers, now: datetime) -> int:
    """Start the run of every schedule due at `now`, each once in this pass (paged past
    the last one fired: a schedule moves on only when its run's start is projected); how
    many were fired."""
    fired, after = 0, None
    while due := await due_schedules(engine, now, BATCH, after):
        for schedule in due:
            await asyncio.to_thread(_fire, store, handlers, schedule,
                                    schedule.cron.latest_at_or_before(now))
        fired += len(due)
        last = due[-1]
        after = (last.next_fire_at, last.app_id, last.node_id)
    return fired


def _fire(store: EventStore, handlers: CommandHandlers, schedule: DueSchedule,
          tick: datetime) -> None:
    run_id, task_id = scheduled_run_ids(schedule.app_id, schedule.node_id, tick)
    local = tick.astimezone(ZoneInfo(schedule.cron.timezone))
    user = str(schedule.owner_id or schedule.tenant_id)
    outcome = execute(store, handlers, CommandEnvelope.of(
        cmd.StartWorkflowRun(run_id=run_id, app_id=schedule.app_id, task_id=task_id,
                             mode="workflow", triggered_from="schedule", user=user,
                             inputs=schedule_inputs(local.isoformat()),
                             root_node_id=schedule.node_id, scheduled_at=tick),
        aggregate_id=run_id, tenant_id=schedule.tenant_id, actor_id=schedule.owner_id,
        correlation_id=run_id, command_id=uuid5(run_id, "start")))
    extra = {"app_id": str(schedule.app_id), "node_id": schedule.node_id,
             "tick": tick.isoformat(), "workflow_run_id": str(run_id)}
    if outcome.status == "rejected":
        # the app unpublished, its node gone in a republish: nothing to run at this tick
        log.warning("scheduled run refused", extra={**extra, "error": outcome.error})
    else:
        log.info("scheduled run started", extra=extra)
