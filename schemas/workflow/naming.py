"""Ids and keys of the workflow context that the gateway, the write side, the read side and
the engine agree on. No I/O."""

from __future__ import annotations

import hashlib
import json
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


def environment_secret_purpose(tenant_id: UUID) -> str:
    """The sealing purpose (adapters/secrets.py) of a workspace's secret environment
    variables: events and read models hold them sealed with it, the engine unseals them."""
    return f"workflow-environment:{tenant_id}"


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
