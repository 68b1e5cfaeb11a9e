"""Command handlers of drafts and versions: save the draft, publish it, snapshot it for a
debug run. An app nobody saved a draft for has the default one of its mode (what Dify's
editor creates when the app is first opened)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.platform.aggregates import App
from commands.registry import command_handlers
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import PublishedWorkflow, WorkflowDraft, WorkflowVersion
from schemas.errors import AppNotFound, WorkflowTriggerInvalid
from schemas.workflow import commands as cmd
from schemas.workflow import events as ev
from schemas.workflow.naming import (
    WORKFLOW_APP_MODES,
    draft_hash,
    published_workflow_id_for,
    workflow_draft_id_for,
)
from workflow_graph.defaults import DEFAULT_FEATURES, default_graph
from workflow_graph.triggers import TriggerConfigError, check_triggers


def workflow_app(uow: UnitOfWork, app_id: UUID) -> str:
    """The app's mode, once it is known to be a workflow or advanced-chat app of the
    caller's workspace."""
    app = uow.get(App, app_id)
    app.ensure_visible_to(uow.ctx.tenant_id)
    mode = str(app.state["mode"])
    if mode not in WORKFLOW_APP_MODES:
        raise AppNotFound("App mode is not in the supported list: "
                          f"{', '.join(WORKFLOW_APP_MODES)}")
    return mode


def current_draft(uow: UnitOfWork, app_id: UUID) -> ev.WorkflowDraftSynced:
    """The draft as saved; the default draft of the app's mode when none was."""
    mode = workflow_app(uow, app_id)
    saved = uow.get(WorkflowDraft, workflow_draft_id_for(app_id)).draft
    if saved is not None:
        return saved
    graph, features = default_graph(mode), dict(DEFAULT_FEATURES)
    return ev.WorkflowDraftSynced(app_id=app_id, graph=graph, features=features,
                                  environment_variables=[], conversation_variables=[],
                                  hash=draft_hash(graph, features), synced_by=None)


def sync_workflow_draft(c: cmd.SyncWorkflowDraft, uow: UnitOfWork) -> dict[str, Any]:
    workflow_app(uow, c.app_id)
    payload = ev.WorkflowDraftSynced(
        app_id=c.app_id, graph=c.graph, features=c.features,
        environment_variables=c.environment_variables,
        conversation_variables=c.conversation_variables,
        hash=draft_hash(c.graph, c.features), synced_by=uow.ctx.actor_id,
        dependencies=c.dependencies or [])
    uow.get(WorkflowDraft, workflow_draft_id_for(c.app_id)).sync(
        payload, c.hash, c.overwrite, c.dependencies, uow.ctx)
    return {"hash": payload.hash}


def _freeze(uow: UnitOfWork, app_id: UUID, workflow_id: UUID, kind: str, version: str,
            marked_name: str = "", marked_comment: str = "") -> None:
    draft = current_draft(uow, app_id)
    uow.get(WorkflowVersion, workflow_id).create(ev.WorkflowVersionCreated(
        app_id=app_id, kind=kind, version=version, graph=draft.graph, features=draft.features,
        environment_variables=draft.environment_variables,
        conversation_variables=draft.conversation_variables, created_by=uow.ctx.actor_id,
        marked_name=marked_name, marked_comment=marked_comment), uow.ctx)


def publish_workflow(c: cmd.PublishWorkflow, uow: UnitOfWork) -> dict[str, Any]:
    try:  # a schedule or webhook that could not work is refused, not published
        check_triggers(current_draft(uow, c.app_id).graph)
    except TriggerConfigError as error:
        raise WorkflowTriggerInvalid(str(error)) from None
    _freeze(uow, c.app_id, c.workflow_id, "workflow", c.version, c.marked_name,
            c.marked_comment)
    uow.get(PublishedWorkflow, published_workflow_id_for(c.app_id)).publish(
        ev.WorkflowPublished(app_id=c.app_id, workflow_id=c.workflow_id,
                             published_by=uow.ctx.actor_id), uow.ctx)
    return {"workflow_id": str(c.workflow_id)}


def snapshot_workflow_draft(c: cmd.SnapshotWorkflowDraft, uow: UnitOfWork) -> dict[str, Any]:
    _freeze(uow, c.app_id, c.workflow_id, "draft", "draft")
    return {"workflow_id": str(c.workflow_id)}


def reseal_workflow_environment(c: cmd.ResealWorkflowEnvironment,
                                uow: UnitOfWork) -> dict[str, Any]:
    holder = WorkflowDraft if c.of == "draft" else WorkflowVersion
    uow.get(holder, c.aggregate_id).reseal(c.previous, c.environment_variables, uow.ctx)
    return {"result": "success"}


HANDLERS = command_handlers(sync_workflow_draft, publish_workflow, snapshot_workflow_draft,
                            reseal_workflow_environment)
