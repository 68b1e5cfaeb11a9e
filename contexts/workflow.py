"""The workflow context: drafts, published versions, DSL import/export, and runs executed by
the graph engine, a consumer group (what Dify's `workflow`, `workflow_storage` and
`triggered_workflow_dispatcher` queues did)."""

from __future__ import annotations

from commands.workflow import aggregates, runs
from contexts.manifest import ContextManifest, payloads_in
from gateway.workflow import runs as run_routes
from projections.tables import PROJECTION_NAME
from projections.workflow.runs import projectors as run_projectors
from schemas.workflow import events

WORKFLOW = ContextManifest(
    name="workflow",
    aggregates=[aggregates.WorkflowDraft, aggregates.PublishedWorkflow,
                aggregates.WorkflowVersion, aggregates.WorkflowRun],
    events=payloads_in(events),
    upcasters=events.UPCASTERS,
    handlers=[runs.HANDLERS],
    projectors={PROJECTION_NAME: [run_projectors.PROJECTORS]},
    routers=[run_routes.service_router, run_routes.console_router],
    work=[],
)
