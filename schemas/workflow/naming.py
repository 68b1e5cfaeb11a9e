"""Ids and keys of the workflow context that the gateway, the write side, the read side and
the engine agree on. No I/O."""

from __future__ import annotations

from uuid import UUID, uuid5

from schemas.base import EDDY_NAMESPACE


def workflow_draft_id_for(app_id: UUID) -> UUID:
    """The WorkflowDraft aggregate of a workflow or advanced-chat app (one per app)."""
    return uuid5(EDDY_NAMESPACE, f"workflow-draft:{app_id}")


def published_workflow_id_for(app_id: UUID) -> UUID:
    """The PublishedWorkflow aggregate of an app: which version it runs."""
    return uuid5(EDDY_NAMESPACE, f"published-workflow:{app_id}")


def node_idempotency_key(run_id: UUID, node_id: str, scope: str = "") -> str:
    """What a node's outside effects carry (http-request's `Idempotency-Key` header): the
    same on every retry and every takeover of the run, so the receiver can tell a repeat.
    `scope` tells apart the executions of one node inside an iteration or loop."""
    return str(uuid5(EDDY_NAMESPACE, f"workflow-node:{run_id}:{node_id}:{scope}"))


def workflow_app_log_id_for(run_id: UUID) -> UUID:
    """The log entry of an app's run (Dify's `workflow_app_logs` row): one per run, the same
    id in every rebuild of the read model."""
    return uuid5(EDDY_NAMESPACE, f"workflow-app-log:{run_id}")
