"""Command handlers of workflow runs: a run starts on a version of the app's workflow (a
Service API or debug run here; an advanced-chat message's run is started the same way by
the chatflow processor, `start_run`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.platform.aggregates import App
from commands.registry import command_handlers
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import PublishedWorkflow, WorkflowRun, WorkflowVersion
from schemas.conversation.naming import end_user_id_for
from schemas.errors import (
    ConversationVariableNotFound,
    WorkflowNodeNotFound,
    WorkflowNotFound,
    WorkflowNotPublished,
    WorkflowRunNotFound,
)
from schemas.workflow import commands as cmd
from schemas.workflow import events as ev
from schemas.workflow.naming import published_workflow_id_for
from workflow_graph.triggers import trigger_nodes

# Runs made for an end user (Dify's: a Service API caller's `user`; a webhook's caller);
# the others are a console account's (a debug run; a schedule runs as the workspace owner).
END_USER_RUNS = frozenset({"app-run", "webhook"})


def version_to_run(uow: UnitOfWork, c: cmd.StartWorkflowRun) -> WorkflowVersion:
    """The version the run runs: the one named, or the one the app published."""
    workflow_id = c.workflow_id or uow.get(PublishedWorkflow,
                                           published_workflow_id_for(c.app_id)).workflow_id
    if workflow_id is None:
        raise WorkflowNotPublished()
    version = uow.get(WorkflowVersion, workflow_id)
    # A draft's snapshot runs only as the console's debug run it was made for.
    if version.spec is None or version.spec.app_id != c.app_id or (
            version.spec.kind == "draft" and c.triggered_from != "debugging"):
        raise WorkflowNotFound()
    if c.node_id is not None and c.node_id not in {
            node.get("id") for node in version.spec.graph.get("nodes", [])}:
        raise WorkflowNodeNotFound()
    # a trigger's run starts at its node: one the version has (a republish may drop it)
    if c.root_node_id is not None and c.root_node_id not in {
            node_id for node_id, _, _ in trigger_nodes(version.spec.graph)}:
        raise WorkflowNodeNotFound()
    return version


def start_run(uow: UnitOfWork, c: cmd.StartWorkflowRun, version: WorkflowVersion, *,
              system: dict[str, Any] | None = None, conversation_id: UUID | None = None,
              message_id: UUID | None = None,
              conversation_variables: dict[str, Any] | None = None) -> None:
    """Record the run's start (once: a redelivered start records nothing). `system`: the
    `sys.*` variables beyond those every run has (advanced-chat's query, conversation…)."""
    end_user = end_user_id_for(c.app_id, c.user) if c.triggered_from in END_USER_RUNS else None
    uow.get(WorkflowRun, c.run_id).start(ev.WorkflowRunStarted(
        app_id=c.app_id, workflow_id=version.id, task_id=c.task_id, mode=c.mode,
        triggered_from=c.triggered_from, user=c.user, end_user_id=end_user, inputs=c.inputs,
        system={"user_id": c.user, "app_id": str(c.app_id), "workflow_id": str(version.id),
                "workflow_run_id": str(c.run_id), "files": c.files, **(system or {})},
        files=c.files, node_id=c.node_id, conversation_id=conversation_id,
        message_id=message_id, conversation_variables=conversation_variables or {},
        version=version.spec.version, root_node_id=c.root_node_id,
        scheduled_at=c.scheduled_at), uow.ctx)


def start_workflow_run(c: cmd.StartWorkflowRun, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).ensure_visible_to(uow.ctx.tenant_id)
    version = version_to_run(uow, c)
    start_run(uow, c, version)
    return {"workflow_run_id": str(c.run_id), "task_id": str(c.task_id),
            "workflow_id": str(version.id)}


def stop_workflow_run(c: cmd.StopWorkflowRun, uow: UnitOfWork) -> dict[str, Any]:
    run = uow.get(WorkflowRun, c.run_id)
    if run.started is None or run.started.app_id != c.app_id:
        raise WorkflowRunNotFound()
    return {"stopped": run.stop_paused(uow.ctx)}


def update_conversation_variable(c: cmd.UpdateConversationVariable,
                                 uow: UnitOfWork) -> dict[str, Any]:
    run = uow.get(WorkflowRun, c.run_id)
    if run.started is None or run.started.conversation_id != c.conversation_id:
        raise ConversationVariableNotFound()
    uow.get(App, run.started.app_id).ensure_visible_to(uow.ctx.tenant_id)
    run.update_conversation_variable(c.conversation_id, c.name, c.value, c.user, uow.ctx)
    return {"workflow_run_id": str(c.run_id), "name": c.name}


def expire_workflow_run(c: cmd.ExpireWorkflowRun, uow: UnitOfWork) -> dict[str, Any]:
    return {"run_id": str(c.run_id), "expired": uow.get(WorkflowRun, c.run_id).expire(uow.ctx)}


HANDLERS = command_handlers(start_workflow_run, stop_workflow_run,
                            update_conversation_variable, expire_workflow_run)
