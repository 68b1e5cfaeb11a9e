"""Workflow aggregates: an app's draft (and which version it publishes), immutable versions,
and runs. A run's events are its history, folded by the engine
(`workflow_graph.scheduler.fold`); the aggregate here guards what may be recorded (nothing
after the run ended, a node's result once)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.aggregate import Aggregate, Context
from events.envelope import Envelope
from schemas.base import EventPayload
from schemas.errors import BadRequest, DraftWorkflowNotSync, NotFound, SecretChanged
from schemas.workflow import events as ev
from schemas.workflow.forms import RunForms, checked_submission
from schemas.workflow.naming import HIDDEN_VALUE, SECRET_VALUE_TYPE

RUN_ENDED = frozenset({"succeeded", "failed", "stopped"})


class WorkflowDraft(Aggregate):
    """One per app: the draft as last synced."""

    draft: ev.WorkflowDraftSynced | None = None

    def apply_WorkflowDraftSynced(self, p: ev.WorkflowDraftSynced) -> None:
        self.draft = p

    def apply_WorkflowEnvironmentResealed(self, p: ev.WorkflowEnvironmentResealed) -> None:
        assert self.draft is not None
        self.draft = self.draft.model_copy(
            update={"environment_variables": p.environment_variables})

    def reseal(self, previous: list[dict[str, Any]], variables: list[dict[str, Any]],
               ctx: Context) -> None:
        _reseal(self, self.draft.environment_variables if self.draft else None, previous,
                variables, ctx)

    def sync(self, payload: ev.WorkflowDraftSynced, started_from: str | None, overwrite: bool,
             dependencies: list[dict[str, Any]] | None, ctx: Context) -> None:
        """Save what the editor sent, if it started from the draft as saved (`started_from`
        is that draft's hash; an import `overwrite`s regardless). A secret it sent back as
        HIDDEN_VALUE keeps its saved value (renamed if the name changed); without
        `dependencies` (the editor sends none), the saved ones stay."""
        if self.draft is not None and not overwrite and started_from != self.draft.hash:
            raise DraftWorkflowNotSync()
        saved = {v.get("id"): v for v in self.draft.environment_variables} if self.draft else {}
        kept = []
        for variable in payload.environment_variables:
            if variable.get("value") == HIDDEN_VALUE:
                before = saved.get(variable.get("id"))
                if before is None:
                    raise BadRequest(f"Environment variable {variable.get('name')!r} has no "
                                     "saved value to keep.")
                variable = {**before, "name": variable.get("name")}
            kept.append(variable)
        update: dict[str, Any] = {"environment_variables": kept}
        if dependencies is None and self.draft is not None:
            update["dependencies"] = self.draft.dependencies
        self.record(payload.model_copy(update=update), ctx)


class PublishedWorkflow(Aggregate):
    """One per app: the version it runs."""

    workflow_id: UUID | None = None

    def apply_WorkflowPublished(self, p: ev.WorkflowPublished) -> None:
        self.workflow_id = p.workflow_id

    def publish(self, payload: ev.WorkflowPublished, ctx: Context) -> None:
        if payload.workflow_id != self.workflow_id:
            self.record(payload, ctx)


class WorkflowVersion(Aggregate):
    """One immutable graph (Dify's `workflow_id`)."""

    spec: ev.WorkflowVersionCreated | None = None

    def apply_WorkflowVersionCreated(self, p: ev.WorkflowVersionCreated) -> None:
        self.spec = p

    def apply_WorkflowEnvironmentResealed(self, p: ev.WorkflowEnvironmentResealed) -> None:
        assert self.spec is not None
        self.spec = self.spec.model_copy(
            update={"environment_variables": p.environment_variables})

    def reseal(self, previous: list[dict[str, Any]], variables: list[dict[str, Any]],
               ctx: Context) -> None:
        _reseal(self, self.spec.environment_variables if self.spec else None, previous,
                variables, ctx)

    def create(self, payload: ev.WorkflowVersionCreated, ctx: Context) -> None:
        if not self.exists:
            self.record(payload, ctx)


def _reseal(aggregate: WorkflowDraft | WorkflowVersion, stored: list[dict[str, Any]] | None,
            previous: list[dict[str, Any]], variables: list[dict[str, Any]],
            ctx: Context) -> None:
    """Only how the secrets are sealed may change: the same variables, in the same order,
    with the same non-secret values."""
    if stored is None or aggregate.tenant_id != ctx.tenant_id:
        raise NotFound("Workflow not found.")
    if stored != previous:
        raise SecretChanged()
    same = len(variables) == len(stored) and all(
        {**v, "value": None} == {**s, "value": None}
        and (s.get("value_type") == SECRET_VALUE_TYPE or v.get("value") == s.get("value"))
        for v, s in zip(variables, stored, strict=False))
    if not same:
        raise BadRequest("A re-seal changes nothing but how secret values are sealed.")
    if variables != stored:
        aggregate.record(ev.WorkflowEnvironmentResealed(environment_variables=variables), ctx)


class WorkflowRun(Aggregate):
    """A run's history. `status` is Dify's: running, paused, succeeded, failed, stopped."""

    started: ev.WorkflowRunStarted | None = None
    status: str = "running"
    # node id -> its result, once recorded (a node's result is recorded once)
    results: dict[str, ev.WorkflowNodeSucceeded | ev.WorkflowNodeFailed]
    paused: ev.WorkflowRunPaused | None = None
    forms: RunForms  # its human-input forms: waiting, answered
    # what a stop of the paused run reports: the nodes started, the tokens used, and the
    # seconds it was active (a pause does not count, as for WORKFLOW_MAX_EXECUTION_TIME)
    nodes_started: set[str]
    total_tokens: int = 0
    expired = False  # past the retention: gone from the read models
    active_seconds: float = 0.0
    active_since: float = 0.0

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.results = {}
        self.forms = RunForms()
        self.nodes_started = set()
        # as the run leaves them (`ev.conversation_variables_left`), for chatflow runs
        self.conversation_variables: dict[str, Any] = {}

    def _apply(self, event: Envelope[EventPayload]) -> None:
        super()._apply(event)
        self.forms.note(event.payload)
        at = event.occurred_at.timestamp()
        if isinstance(event.payload, ev.WorkflowRunStarted | ev.WorkflowHumanInputSubmitted
                      | ev.WorkflowHumanInputTimedOut):
            self.active_since = at
        elif isinstance(event.payload, ev.WorkflowRunPaused):
            self.active_seconds += at - self.active_since

    @property
    def ended(self) -> bool:
        return self.status in RUN_ENDED

    def apply_WorkflowRunExpired(self, p: ev.WorkflowRunExpired) -> None:
        self.expired = True

    def expire(self, ctx: Context) -> bool:
        """An ended run leaves the read models, once; a running or paused one stays."""
        if not self.exists or not self.ended or self.expired:
            return False
        self.record(ev.WorkflowRunExpired(), ctx)
        return True

    def apply_WorkflowRunStarted(self, p: ev.WorkflowRunStarted) -> None:
        self.started = p
        self.conversation_variables = dict(p.conversation_variables)

    def apply_WorkflowNodeStarted(self, p: ev.WorkflowNodeStarted) -> None:
        self.nodes_started.add(p.node_id)

    def apply_WorkflowNodeSucceeded(self, p: ev.WorkflowNodeSucceeded) -> None:
        self.results[p.node_id] = p
        self.total_tokens += int((p.usage or {}).get("total_tokens") or 0)
        self.conversation_variables.update(p.updates.get("conversation", {}))

    def apply_WorkflowNodeFailed(self, p: ev.WorkflowNodeFailed) -> None:
        self.results[p.node_id] = p

    def apply_WorkflowNodeRetried(self, p: ev.WorkflowNodeRetried) -> None:
        pass

    def apply_WorkflowBodyNodeRecorded(self, p: ev.WorkflowBodyNodeRecorded) -> None:
        pass

    def apply_WorkflowRunPaused(self, p: ev.WorkflowRunPaused) -> None:
        self.status, self.paused = "paused", p

    def apply_WorkflowHumanInputSubmitted(self, p: ev.WorkflowHumanInputSubmitted) -> None:
        self.status, self.paused = "running", None

    def apply_WorkflowHumanInputTimedOut(self, p: ev.WorkflowHumanInputTimedOut) -> None:
        self.status, self.paused = "running", None

    def apply_WorkflowRunSucceeded(self, p: ev.WorkflowRunSucceeded) -> None:
        self.status = "succeeded"

    def apply_WorkflowRunFailed(self, p: ev.WorkflowRunFailed) -> None:
        self.status = "failed"

    def apply_WorkflowRunStopped(self, p: ev.WorkflowRunStopped) -> None:
        self.status = "stopped"

    def apply_WorkflowConversationVariableUpdated(
            self, p: ev.WorkflowConversationVariableUpdated) -> None:
        self.conversation_variables[p.name] = p.value

    def start(self, payload: ev.WorkflowRunStarted, ctx: Context) -> None:
        if not self.exists:
            self.record(payload, ctx)

    def stop_paused(self, ctx: Context) -> bool:
        """End the run stopped if it waits for human input; False (nothing recorded) for any
        other: a running run is stopped by the engine driving it, an ended one stays so."""
        if self.status != "paused":
            return False
        self.record(ev.WorkflowRunStopped(
            elapsed_time=round(self.active_seconds, 6), total_tokens=self.total_tokens,
            total_steps=len(self.nodes_started)), ctx)
        return True

    def update_conversation_variable(self, conversation_id: UUID, name: str, value: Any,
                                     user: str, ctx: Context) -> bool:
        """Set a conversation variable on the run that left the conversation's variables (at
        any status: its own writes came first); False when unchanged or not that
        conversation's run."""
        if self.started is None or self.started.conversation_id != conversation_id:
            return False
        if name in self.conversation_variables and self.conversation_variables[name] == value:
            return False
        self.record(ev.WorkflowConversationVariableUpdated(name=name, value=value,
                                                           updated_by=user), ctx)
        return True

    def note(self, payload: Any, ctx: Context) -> bool:
        """Record a fact of the running run; False (nothing recorded) once it ended, or for a
        second result of one node (a redelivered attempt's)."""
        if self.ended:
            return False
        node_id = getattr(payload, "node_id", None)
        if isinstance(payload, ev.WorkflowNodeSucceeded | ev.WorkflowNodeFailed) \
                and node_id in self.results:
            return False
        self.record(payload, ctx)
        return True

    def submit_form(self, app_id: UUID, token: str, action: str, inputs: dict[str, Any],
                    user: str, now: float, ctx: Context) -> None:
        """Answer a waiting form: refused (Dify's 4xx, nothing recorded) for a form unknown
        to the app, answered already or expired, and for a submission the form does not
        accept (an unknown action, a required input missing)."""
        paused = self.forms.waiting(token, app_id, now)
        self.record(ev.WorkflowHumanInputSubmitted(
            node_id=paused.node_id, form_token=token, action=action,
            inputs=checked_submission(paused.form, action, inputs), submitted_by=user), ctx)

    def time_out_form(self, token: str, now: float, ctx: Context) -> bool:
        """Record the timeout of a form waiting past its expiry; False (nothing recorded)
        when it was answered, the run went on or ended, or it is not due yet."""
        due = self.forms.due(token, now)
        if due is None:
            return False
        self.record(ev.WorkflowHumanInputTimedOut(node_id=due.node_id, form_token=token), ctx)
        return True
