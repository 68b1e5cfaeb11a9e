"""Ids and keys of the workflow context that the gateway, the write side, the read side and
the engine agree on. No I/O."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any
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


# The app modes that run a workflow (the others run a model config).
WORKFLOW_APP_MODES = ("workflow", "advanced-chat")

# What the editor sends back for a secret environment variable it did not change (Dify's
# `HIDDEN_VALUE`): the value saved before stays.
HIDDEN_VALUE = "[__HIDDEN__]"
SECRET_VALUE_TYPE = "secret"


def import_key(tenant_id: UUID, import_id: UUID) -> str:
    """Key-value key of a workspace's DSL import waiting for its confirmation (Dify keeps it
    in Redis)."""
    return f"app_import_info:{tenant_id}:{import_id}"


def import_dependencies_key(app_id: UUID) -> str:
    """Key-value key of the plugins an app's last import named (Dify's
    `app_check_dependencies:`), for the editor's check of missing ones."""
    return f"app_check_dependencies:{app_id}"


def draft_hash(graph: dict[str, Any], features: dict[str, Any]) -> str:
    """Dify's `unique_hash` of a draft: of its graph and features, as JSON."""
    text = json.dumps({"graph": graph, "features": features}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def new_form_token(run_id: UUID) -> str:
    """A human-input form's token: the run's id (where the form lives, no look-up table)
    and 128 random bits (what makes it unguessable). Made once, when the run pauses."""
    return run_id.hex + secrets.token_hex(16)


def run_id_of_form_token(token: str) -> UUID | None:
    """The run a form token names; None for anything that is not a form token."""
    if len(token) != 64 or any(c not in "0123456789abcdef" for c in token):
        return None
    return UUID(hex=token[:32])


def chat_run_id_for(message_id: UUID) -> UUID:
    """The workflow run answering an advanced-chat message (one per message: a redelivered
    message finds the run it started)."""
    return uuid5(EDDY_NAMESPACE, f"chat-workflow-run:{message_id}")


def environment_secret_purpose(tenant_id: object) -> str:
    """The sealing purpose (adapters/secrets.py) of a workspace's secret environment
    variables: a key per workspace, so one workspace's ciphertext opens under no other's."""
    return f"workflow environment secrets {tenant_id}"


# A run's events stream on its task's stream (schemas/conversation/naming.py task_stream_key),
# as a chat answer's do. What ends a client's stream of a workflow run (a pause ends it too,
# unless the client asks to follow the run across pauses).
WORKFLOW_END_STREAM_EVENTS = ("workflow_finished", "error")
WORKFLOW_PAUSE_STREAM_EVENT = "workflow_paused"


def node_outputs_key(tenant_id: UUID | None, run_id: UUID, execution_id: UUID) -> str:
    """Where a node's outputs too large for its event are kept (`outputs_ref`)."""
    return f"workflow_runs/{tenant_id}/{run_id}/{execution_id}.json"


def node_execution_id(run_id: UUID, node_id: str, scope: str = "") -> UUID:
    """A node's execution id in a run (one execution per node and run, and per index inside
    an iteration or loop: `scope` as in `node_idempotency_key`): the same on a takeover's
    restart, so its started and finished events name one execution."""
    return uuid5(run_id, f"node-execution:{node_id}{scope}")


def run_owner(app_id: UUID, end_user_id: UUID | None) -> str:
    """Who a run's task belongs to (the value of its stop request and owner keys): the app's
    end user, or for a debug run (no end user) the app's console."""
    return f"{app_id}:{end_user_id or 'console'}"


def tool_file_key(tenant_id: UUID, file_id: UUID, extension: str) -> str:
    """Where a file a node made (an HTTP answer's body) is kept; `extension` with its dot."""
    return f"tool_files/{tenant_id}/{file_id}{extension}"


def workflow_app_log_id_for(run_id: UUID) -> UUID:
    """The log entry of an app's run (Dify's `workflow_app_logs` row): one per run, the same
    id in every rebuild of the read model."""
    return uuid5(EDDY_NAMESPACE, f"workflow-app-log:{run_id}")


def trigger_id_for(app_id: UUID, node_id: str) -> UUID:
    """A published trigger node's id (a webhook's: its read-model row, named in its URL)."""
    return uuid5(EDDY_NAMESPACE, f"workflow-trigger:{app_id}:{node_id}")


def scheduled_run_ids(app_id: UUID, node_id: str, tick: datetime) -> tuple[UUID, UUID]:
    """(run, task) ids of a schedule's run at a tick (UTC): the same in every scheduler and
    every retry, so a tick starts one run however often it is fired."""
    at = tick.astimezone(UTC).isoformat()
    scope = uuid5(EDDY_NAMESPACE, f"workflow-schedule:{app_id}:{node_id}:{at}")
    return uuid5(scope, "run"), uuid5(scope, "task")
