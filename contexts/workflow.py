"""The workflow context: drafts, published versions, DSL import/export, and runs executed by
the graph engine, a consumer group (what Dify's `workflow`, `workflow_storage` and
`triggered_workflow_dispatcher` queues did)."""

from __future__ import annotations

from commands.workflow import aggregates, drafts, runs
from contexts.manifest import ContextManifest, payloads_in
from gateway.workflow import drafts as draft_routes
from gateway.workflow import dsl as dsl_routes
from projections.tables import PROJECTION_NAME
from projections.workflow import drafts as draft_projectors
from schemas.workflow import events

WORKFLOW = ContextManifest(
    name="workflow",
    aggregates=[aggregates.WorkflowDraft, aggregates.PublishedWorkflow,
                aggregates.WorkflowVersion, aggregates.WorkflowRun],
    events=payloads_in(events),
    upcasters=events.UPCASTERS,
    handlers=[runs.HANDLERS, drafts.HANDLERS],
    projectors={PROJECTION_NAME: [draft_projectors.PROJECTORS]},
    routers=[draft_routes.router, dsl_routes.router],
    work=[],
)
