"""Commands of the workflow context."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
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
    triggered_from: str  # "app-run" | "debugging" | "webhook" | "schedule"
    user: str
    inputs: dict[str, Any]
    files: list[dict[str, Any]] = []
    node_id: str | None = None  # a single-node debug run
    # the trigger node a webhook or schedule run starts from (instead of the start node)
    root_node_id: str | None = None
    scheduled_at: datetime | None = None  # a schedule run: the tick it is the run of


class StopWorkflowRun(CommandPayload):
    """Stop an app's run at once if it waits for human input (no member holds a paused run
    to see the stop request the engine looks for while nodes run); any other run is left to
    the engine."""

    run_id: UUID
    app_id: UUID


# --- drafts and versions --------------------------------------------------------------------


class ResealWorkflowEnvironment(CommandPayload):
    """A draft's (`of="draft"`, aggregate `workflow_draft_id_for(app_id)`) or a version's
    environment variables with their secret values sealed again with the workspace's new
    key; `previous`: the variables as read, so a draft saved meanwhile is not overwritten."""

    aggregate_id: UUID
    of: Literal["draft", "version"]
    previous: list[dict[str, Any]]
    environment_variables: list[dict[str, Any]]


class SyncWorkflowDraft(CommandPayload):
    """Save an app's draft (aggregate: `workflow_draft_id_for(app_id)`). The gateway has
    validated the graph and sealed new secret values; a secret sent as `HIDDEN_VALUE` keeps
    the value saved before under its id. `hash` is the draft the editor started from: another
    one is refused (`draft_workflow_not_sync`) unless `overwrite` (a DSL import)."""

    app_id: UUID
    graph: dict[str, Any]
    features: dict[str, Any]
    environment_variables: list[dict[str, Any]]
    conversation_variables: list[dict[str, Any]]
    hash: str | None = None
    overwrite: bool = False
    # An import's DSL `dependencies`; None (the editor's saves) keeps the saved ones.
    dependencies: list[dict[str, Any]] | None = None


class PublishWorkflow(CommandPayload):
    """Freeze the draft as version `workflow_id` (Dify's version string: the publish time)
    and make it the one the app runs."""

    app_id: UUID
    workflow_id: UUID
    version: str
    marked_name: str = ""
    marked_comment: str = ""


class SnapshotWorkflowDraft(CommandPayload):
    """Freeze the draft as `workflow_id` (kind "draft") for a debug run of it."""

    app_id: UUID
    workflow_id: UUID


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


# --- conversation variables (chatflow) -----------------------------------------------------


class ExpireWorkflowRun(CommandPayload):
    """The retention job's: this ended run is past the retention."""

    run_id: UUID


class UpdateConversationVariable(CommandPayload):
    """Set a chatflow conversation's variable (Service API PUT …/variables/{variable_id}), on
    `run_id`, the run that last left the conversation's variables."""

    run_id: UUID
    conversation_id: UUID
    name: str
    value: Any
    user: str
