"""The workflow context: drafts, published versions, DSL import/export, and runs executed by
the graph engine, a consumer group (what Dify's `workflow`, `workflow_storage` and
`triggered_workflow_dispatcher` queues did)."""

from __future__ import annotations

from commands.workflow import aggregates, drafts, runs
from contexts.manifest import ContextManifest, payloads_in
from events.routing import Route
from gateway.workflow import drafts as draft_routes
from gateway.workflow import dsl as dsl_routes
from gateway.workflow import run_history
from gateway.workflow import runs as run_routes
from projections.tables import PROJECTION_NAME
from projections.workflow import drafts as draft_projectors
from projections.workflow.runs import projectors as run_projectors
from schemas.workflow import events
from workers.declarations import Job, WorkTopic
from workers.workflow.processors import SWEEP_EVERY_SECONDS, fail_overdue_runs, run_processor

# A run's messages (all on its WorkflowRun aggregate: one run's in order): the engine drives
# the run from its history.
RUNS = WorkTopic("workflow.runs", role="runs", processor=run_processor,
                 routes=[Route([events.WorkflowRunStarted, events.WorkflowHumanInputSubmitted,
                                events.WorkflowHumanInputTimedOut])])

WORKFLOW = ContextManifest(
    name="workflow",
    aggregates=[aggregates.WorkflowDraft, aggregates.PublishedWorkflow,
                aggregates.WorkflowVersion, aggregates.WorkflowRun],
    events=payloads_in(events),
    upcasters=events.UPCASTERS,
    handlers=[runs.HANDLERS, drafts.HANDLERS],
    projectors={PROJECTION_NAME: [draft_projectors.PROJECTORS, run_projectors.PROJECTORS]},
    routers=[run_routes.router, run_history.service_router, run_history.console_router,
             draft_routes.router, dsl_routes.router],
    work=[RUNS],
    jobs=[Job("fail_overdue_workflow_runs", every=SWEEP_EVERY_SECONDS, run=fail_overdue_runs)],
)
