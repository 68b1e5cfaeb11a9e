"""Commands of the workflow context."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from schemas.base import CommandPayload

# --- runs ---------------------------------------------------------------------------------


class StartWorkflowRun(CommandPayload):
    """Run a version of an app's workflow (its aggregate: the new run's id); without
    `workflow_id`, the version the app has published."""

    run_id: UUID
    app_id: UUID
    workflow_id: UUID | None = None
    task_id: UUID
    mode: str
    triggered_from: str  # "app-run" | "debugging"
    user: str
    inputs: dict[str, Any]
    files: list[dict[str, Any]] = []
    node_id: str | None = None  # a single-node debug run


# --- human input -----------------------------------------------------------------------------


class SubmitHumanInput(CommandPayload):
    """The answer to a paused run's form (Service API POST /v1/form/human_input/{token})."""

    run_id: UUID
    app_id: UUID
    form_token: str
    action: str
    inputs: dict[str, Any]
    user: str
    submitted_at: float  # seconds since the epoch: a form past its expiry is refused


class TimeOutHumanInput(CommandPayload):
    """A paused run's form passed its expiry unanswered (the form timeout job)."""

    run_id: UUID
    form_token: str
    now: float  # seconds since the epoch, as the job saw it
