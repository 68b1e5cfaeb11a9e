"""Ids and keys of the workflow context that the gateway, the write side, the read side and
the engine agree on. No I/O."""

from __future__ import annotations

import secrets
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
