"""Event payloads of the workflow context.

Four aggregates:
- `WorkflowDraft` (one per app, `workflow_draft_id_for`): the draft as last synced (its
  `hash` guards concurrent editors).
- `PublishedWorkflow` (one per app, `published_workflow_id_for`): which version the app runs
  (small: a run's start reads it).
- `WorkflowVersion` (id = Dify's `workflow_id`): one immutable graph, created when a draft is
  published, or snapshotted for a debug run of the draft; the engine loads a run's graph from
  it (one event, cached by id).
- `WorkflowRun` (id = `workflow_run_id`): a run's history. The engine folds it
  (`workflow_graph.scheduler.fold`) to know what to start next, so a member taking over a
  run from a dead one starts exactly the nodes whose result was never recorded.

Secret environment variables are sealed (adapters/secrets.py) in these payloads, never plain.
Large node inputs/outputs are put in storage and referenced (`outputs_ref`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from schemas.base import EventPayload, Upcaster

# --- drafts and versions ---------------------------------------------------------------------


class WorkflowDraftSynced(EventPayload):
    app_id: UUID
    graph: dict[str, Any]
    features: dict[str, Any]
    environment_variables: list[dict[str, Any]]  # secret values sealed
    conversation_variables: list[dict[str, Any]]
    hash: str  # of what was synced: a save naming an older hash is refused (409)
    synced_by: UUID | None
    # The plugins the imported DSL named (Dify's `dependencies`), exported again with it.
    dependencies: list[dict[str, Any]] = []


class WorkflowVersionCreated(EventPayload):
    """An immutable graph: a published version (`kind="workflow"`, Dify's version string is a
    timestamp) or a draft snapshotted for a debug run (`kind="draft"`, version "draft")."""

    app_id: UUID
    kind: str  # "workflow" | "draft"
    version: str
    graph: dict[str, Any]
    features: dict[str, Any]
    environment_variables: list[dict[str, Any]]  # secret values sealed
    conversation_variables: list[dict[str, Any]]
    created_by: UUID | None
    marked_name: str = ""
    marked_comment: str = ""


class WorkflowEnvironmentResealed(EventPayload):
    """On a WorkflowDraft or a WorkflowVersion: the same environment variables, their secret
    values sealed with the workspace's new key (`eddy reset-encrypt-key-pair`). A version
    stays immutable in everything it runs with; only how its secrets are sealed changes."""

    environment_variables: list[dict[str, Any]]


class WorkflowPublished(EventPayload):
    """On the app's PublishedWorkflow: `workflow_id` (a WorkflowVersion) is what it runs now."""

    app_id: UUID
    workflow_id: UUID
    published_by: UUID | None


# --- runs (aggregate WorkflowRun) -------------------------------------------------------------


class WorkflowRunStarted(EventPayload):
    """The engine's work: run `workflow_id`'s graph. `system` holds the `sys.*` variables;
    `triggered_from` is Dify's (`debugging`, `app-run`, `webhook`, `schedule`)."""

    app_id: UUID
    workflow_id: UUID
    task_id: UUID
    mode: str  # "workflow" | "advanced-chat"
    triggered_from: str
    user: str  # the Service API's `user` (or the console account's id for debugging)
    end_user_id: UUID | None
    inputs: dict[str, Any]
    system: dict[str, Any]
    files: list[dict[str, Any]] = []
    conversation_id: UUID | None = None  # advanced-chat
    message_id: UUID | None = None  # advanced-chat
    # A single-node debug run: only this node runs, with `inputs` as its variable values.
    node_id: str | None = None
    # How deep in nested workflow calls this run is (WORKFLOW_CALL_MAX_DEPTH).
    call_depth: int = 0
    # advanced-chat: the conversation variables (name -> value) as the conversation's
    # previous run left them (its definitions' defaults on the first turn)
    conversation_variables: dict[str, Any] = {}
    version: str = ""  # the workflow version's Dify version string (what run lists show)
    # a webhook or schedule run (`triggered_from`): the trigger node it starts from, and a
    # schedule's tick (which moves the schedule's next fire time on)
    root_node_id: str | None = None
    scheduled_at: datetime | None = None


class WorkflowNodeStarted(EventPayload):
    node_id: str
    node_type: str
    title: str
    execution_id: UUID  # Dify's node execution id (`id` of node_started/node_finished)
    index: int  # its position among the run's node executions (1-based)
    predecessor_node_id: str | None = None
    attempt: int = 0  # > 0: a retry (error strategy retry) or a takeover's restart


class WorkflowNodeSucceeded(EventPayload):
    node_id: str
    execution_id: UUID
    handle: str = "source"  # the out-edges a branch node follows
    inputs: dict[str, Any] = {}
    process_data: dict[str, Any] = {}
    outputs: dict[str, Any] = {}  # empty when `outputs_ref` holds them
    outputs_ref: str | None = None  # a storage key, for outputs too large for an event
    # Variables of other scopes the node wrote (variable-assigner: {"conversation": {...}}).
    updates: dict[str, dict[str, Any]] = {}
    elapsed_time: float = 0.0
    usage: dict[str, Any] | None = None  # Dify's LLM usage, for nodes that called a model
    status: str = "succeeded"  # or "exception": failed, went on by its error strategy


class WorkflowNodeFailed(EventPayload):
    node_id: str
    execution_id: UUID
    error: str
    error_type: str = "NodeError"
    inputs: dict[str, Any] = {}
    elapsed_time: float = 0.0


class WorkflowNodeRetried(EventPayload):
    """A failed attempt of a node whose error strategy retries it (Dify's `node_retry`)."""

    node_id: str
    execution_id: UUID
    attempt: int
    error: str


class WorkflowBodyNodeRecorded(EventPayload):
    """A fact of a node inside an iteration or loop body, on the run: `scope` names the
    container's pass (`/it[2]`, nested `/it[2]/lp[0]`), `kind` is started / succeeded /
    failed, or forgotten (the scope's facts before it are dropped: a failed pass runs anew).
    Recorded before anything in the body depending on it starts, so a member taking the run
    over replays each pass and reruns only the body node in flight."""

    scope: str
    kind: str
    node_id: str = ""
    outputs: dict[str, Any] = {}
    handle: str = "source"
    updates: dict[str, dict[str, Any]] = {}
    error: str = ""
    error_type: str = ""


class WorkflowRunPaused(EventPayload):
    """At a human-input node: the run holds no worker until the form is submitted or its
    timeout passes."""

    node_id: str
    form_token: str
    form: dict[str, Any]  # what the form shows and accepts (Dify's human input form)
    expires_at: float  # seconds since the epoch


class WorkflowHumanInputSubmitted(EventPayload):
    node_id: str
    form_token: str
    action: str  # the button chosen (the node's branch handle)
    inputs: dict[str, Any]
    submitted_by: str


class WorkflowHumanInputTimedOut(EventPayload):
    node_id: str
    form_token: str


class WorkflowConversationVariableUpdated(EventPayload):
    """A chatflow conversation's variable set through the Service API, on the run that last
    left the conversation's variables: the next turn starts from it (the latest write wins)."""

    name: str
    value: Any
    updated_by: str  # the Service API's `user`


class WorkflowRunSucceeded(EventPayload):
    outputs: dict[str, Any]
    outputs_ref: str | None = None
    answer: str = ""  # advanced-chat: what the answer nodes said
    elapsed_time: float
    total_tokens: int = 0
    total_steps: int = 0
    # advanced-chat: the conversation variables as the run left them
    conversation_variables: dict[str, Any] = {}


class WorkflowRunFailed(EventPayload):
    error: str
    elapsed_time: float
    total_tokens: int = 0
    total_steps: int = 0


class WorkflowRunStopped(EventPayload):
    elapsed_time: float
    total_tokens: int = 0
    total_steps: int = 0


class WorkflowRunExpired(EventPayload):
    """An ended run past the retention (ENABLE_CLEAN_MESSAGES,
    SANDBOX_EXPIRED_RECORDS_RETENTION_DAYS): it leaves the read models (run, node executions,
    app log) and every answer. Its events stay in the store (README: retention)."""


def conversation_variables_left(history: list[EventPayload]) -> dict[str, Any] | None:
    """The conversation variables as a run left them: those it started with, changed by each
    node that wrote some (a variable assigner's write stands even if a later node fails, as
    in Dify); None for a history that is not a started run."""
    if not history or not isinstance(history[0], WorkflowRunStarted):
        return None
    variables = dict(history[0].conversation_variables)
    for payload in history[1:]:
        if isinstance(payload, WorkflowNodeSucceeded):
            variables.update(payload.updates.get("conversation", {}))
        elif isinstance(payload, WorkflowConversationVariableUpdated):
            variables[payload.name] = payload.value
    return variables


# A run's end: one of these, once.
RUN_ENDS = (WorkflowRunSucceeded, WorkflowRunFailed, WorkflowRunStopped)

UPCASTERS: dict[tuple[type[EventPayload], int], Upcaster] = {}
