"""The workflow context: drafts, published versions, DSL import/export, and runs executed by
the graph engine, a consumer group (what Dify's `workflow`, `workflow_storage` and
`triggered_workflow_dispatcher` queues did)."""

from __future__ import annotations

from commands.workflow import aggregates, drafts, human_input, runs
from contexts.manifest import ContextManifest, payloads_in
from events.routing import Route
from gateway.workflow import app_form, chat_messages, conversation_variables, run_history
from gateway.workflow import drafts as draft_routes
from gateway.workflow import dsl as dsl_routes
from gateway.workflow import human_input as human_input_routes
from gateway.workflow import runs as run_routes
from gateway.workflow import statistics as statistics_routes
from gateway.workflow import triggers as trigger_routes
from projections.statistics.projectors import statistics_projectors
from projections.statistics.rules import WORKFLOW_RULES
from projections.statistics.tables import STATISTICS
from projections.tables import PROJECTION_NAME
from projections.workflow import drafts as draft_projectors
from projections.workflow.runs import projectors as run_projectors
from schemas.conversation import events as conversation_events
from schemas.workflow import events
from workers.declarations import Job, WorkTopic
from workers.workflow.chatflow import chatflow_processor, is_chatflow_message
from workers.workflow.forms import (
    FORM_TIMEOUT_CHECK_SECONDS,
    form_deadlines_processor,
    time_out_human_input_forms,
)
from workers.workflow.processors import SWEEP_EVERY_SECONDS, fail_overdue_runs, run_processor
from workers.workflow.retention import clean_messages, clean_messages_schedule
from workers.workflow.schedules import poll_workflow_schedules, poller_schedule
from workers.workflow.unused_datasets import (
    clean_unused_datasets,
    clean_unused_datasets_schedule,
)

# A run's messages (all on its WorkflowRun aggregate: one run's in order): the engine drives
# the run from its history (a paused run stopped: it streams the end).
RUNS = WorkTopic("workflow.runs", role="runs", processor=run_processor,
                 routes=[Route([events.WorkflowRunStarted, events.WorkflowHumanInputSubmitted,
                                events.WorkflowHumanInputTimedOut, events.WorkflowRunStopped])])

# WorkflowRunPaused: its form filed under the minute it expires, for the form timeout job.
FORM_DEADLINES = WorkTopic("workflow.form_deadlines", role="form-deadlines",
                           processor=form_deadlines_processor,
                           routes=[Route([events.WorkflowRunPaused])])

# An advanced-chat app's MessageCreated: its workflow run is started (the chat processor
# skips those).
CHATFLOW = WorkTopic("workflow.chatflow", role="chatflow", processor=chatflow_processor,
                     routes=[Route([conversation_events.MessageCreated],
                                   when=is_chatflow_message)])

# /v1/chat-messages (the conversation context's) checks an advanced-chat message's inputs
# and files against the app's published workflow.
chat_messages.register()
# /v1/parameters (the conversation context's) answers these apps' form from their published
# workflow.
app_form.register()

WORKFLOW = ContextManifest(
    name="workflow",
    aggregates=[aggregates.WorkflowDraft, aggregates.PublishedWorkflow,
                aggregates.WorkflowVersion, aggregates.WorkflowRun],
    events=payloads_in(events),
    upcasters=events.UPCASTERS,
    handlers=[runs.HANDLERS, drafts.HANDLERS, human_input.HANDLERS],
    projectors={PROJECTION_NAME: [draft_projectors.PROJECTORS, run_projectors.PROJECTORS],
                STATISTICS: [statistics_projectors(WORKFLOW_RULES, payloads_in(events))]},
    routers=[run_routes.router, run_history.service_router, run_history.console_router,
             draft_routes.router, dsl_routes.router, human_input_routes.router,
             conversation_variables.router, trigger_routes.router,
             trigger_routes.console_router, statistics_routes.router],
    work=[RUNS, CHATFLOW, FORM_DEADLINES],
    jobs=[Job("fail_overdue_workflow_runs", schedule=SWEEP_EVERY_SECONDS, run=fail_overdue_runs),
          Job("clean_messages", schedule=clean_messages_schedule, run=clean_messages),
          Job("clean_unused_datasets_task", schedule=clean_unused_datasets_schedule,
              run=clean_unused_datasets),
          Job("time_out_human_input_forms", schedule=FORM_TIMEOUT_CHECK_SECONDS,
              run=time_out_human_input_forms),
          # schedule triggers (ENABLE_WORKFLOW_SCHEDULE_POLLER_TASK)
          Job("poll_workflow_schedules", schedule=poller_schedule, run=poll_workflow_schedules)],
)
