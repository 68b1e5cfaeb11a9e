"""The workflow context's command handlers: runs."""

from __future__ import annotations

from uuid import UUID, uuid4

from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowVersion
from schemas import errors
from schemas.conversation.naming import end_user_id_for
from schemas.platform import commands as pc
from schemas.workflow import commands as wc
from schemas.workflow import events as we
from tests.unit.handlers.harness import World, accepted, covers, rejected

GRAPH = {"nodes": [{"id": "start", "data": {"type": "start", "title": "Start"}}], "edges": []}


def version(world: World, app_id: UUID) -> UUID:
    """A published version of the app's workflow, as publishing records it."""
    workflow_id = uuid4()
    cause = uuid4()
    uow = UnitOfWork(world.store, Context(tenant_id=world.me.tenant_id, actor_id=None,
                                          correlation_id=cause, causation_id=cause))
    uow.get(WorkflowVersion, workflow_id).create(we.WorkflowVersionCreated(
        app_id=app_id, kind="workflow", version="2026-12-05 04:30:00", graph=GRAPH,
        features={}, environment_variables=[], conversation_variables=[], created_by=None),
        uow.ctx)
    uow.commit()
    return workflow_id


def start(app_id: UUID, workflow_id: UUID | None,
          run_id: UUID | None = None) -> wc.StartWorkflowRun:
    return wc.StartWorkflowRun(run_id=run_id or uuid4(), app_id=app_id, workflow_id=workflow_id,
                               task_id=uuid4(), mode="workflow", triggered_from="app-run",
                               user="alice", inputs={"q": "hi"})


@covers(wc.StartWorkflowRun)
def test_a_run_starts_on_a_version_of_the_apps_workflow(world: World) -> None:
    app_id = uuid4()
    world.given(pc.CreateApp(app_id=app_id, name="Flow", mode="workflow"))
    workflow_id = version(world, app_id)
    command = start(app_id, workflow_id)
    ran = accepted(world.run(command), workflow_run_id=str(command.run_id),
                   task_id=str(command.task_id), workflow_id=str(workflow_id))
    started = ran.one(we.WorkflowRunStarted)
    assert (started.inputs, started.end_user_id) == ({"q": "hi"}, end_user_id_for(app_id, "alice"))
    assert started.system["workflow_run_id"] == str(command.run_id)
    assert ran.event(we.WorkflowRunStarted).aggregate_id == command.run_id
    # the same run started again (a redelivered command) records nothing more
    assert world.run(command).events == []
    other_app = uuid4()
    world.given(pc.CreateApp(app_id=other_app, name="Other", mode="workflow"))
    rejected(world.run(start(other_app, workflow_id)), errors.WorkflowNotFound)
    rejected(world.run(start(app_id, workflow_id), as_=world.rival), errors.AppNotFound)
    # without a version: the published one, and none published is Dify's app_unavailable
    rejected(world.run(start(app_id, None)), errors.WorkflowNotPublished)
