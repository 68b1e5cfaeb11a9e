"""The workflow context's command handlers: runs."""

from __future__ import annotations

from uuid import UUID, uuid4

from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowRun, WorkflowVersion
from schemas import errors
from schemas.conversation.naming import end_user_id_for
from schemas.platform import commands as pc
from schemas.workflow import commands as wc
from schemas.workflow import events as we
from schemas.workflow.naming import new_form_token
from tests.unit.handlers.harness import World, accepted, covers, rejected, unchanged

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


FORM = {"node_id": "review", "node_title": "Review", "form_content": "Ship it?",
        "inputs": [{"type": "paragraph", "output_variable_name": "comment", "default": None},
                   {"type": "select", "output_variable_name": "priority",
                    "option_source": {"type": "constant", "value": ["low", "high"]}}],
        "user_actions": [{"id": "approve", "title": "Approve", "button_style": "primary"},
                         {"id": "reject", "title": "Reject", "button_style": "default"}],
        "resolved_default_values": {}, "options": {"priority": ["low", "high"]}}
NOW = 1_800_000_000.0


def paused_run(world: World) -> tuple[UUID, UUID, str]:
    """(app, run, form token): a run paused at a human-input node, as the engine records it,
    its form expiring an hour after NOW."""
    app_id = uuid4()
    world.given(pc.CreateApp(app_id=app_id, name="Review flow", mode="workflow"))
    command = start(app_id, version(world, app_id))
    world.given(command)
    token = new_form_token(command.run_id)
    cause = uuid4()
    uow = UnitOfWork(world.store, Context(tenant_id=world.me.tenant_id, actor_id=None,
                                          correlation_id=cause, causation_id=cause))
    uow.get(WorkflowRun, command.run_id).note(we.WorkflowRunPaused(
        node_id="review", form_token=token, form=FORM, expires_at=NOW + 3600), uow.ctx)
    uow.commit()
    return app_id, command.run_id, token


def submit(app_id: UUID, run_id: UUID, token: str, action: str = "approve",
           inputs: dict[str, object] | None = None, at: float = NOW) -> wc.SubmitHumanInput:
    return wc.SubmitHumanInput(
        run_id=run_id, app_id=app_id, form_token=token, action=action, user="bob",
        inputs={"comment": "fine", "priority": "high"} if inputs is None else inputs,
        submitted_at=at)


@covers(wc.SubmitHumanInput)
def test_a_paused_runs_form_is_answered_once_as_the_form_allows(world: World) -> None:
    app_id, run_id, token = paused_run(world)
    # what the form does not accept changes nothing: an unknown action, a missing input, a
    # select value not among its options, a value of the wrong kind
    for bad, message in [
            (submit(app_id, run_id, token, action="merge"),
             "Unknown action 'merge': the form's actions are ['approve', 'reject']."),
            (submit(app_id, run_id, token, inputs={"comment": "fine"}),
             "Missing required input 'priority'."),
            (submit(app_id, run_id, token, inputs={"comment": "ok", "priority": "urgent"}),
             "Input 'priority' must be one of ['low', 'high']."),
            (submit(app_id, run_id, token, inputs={"comment": 3, "priority": "low"}),
             "Input 'comment' must be a string.")]:
        rejected(world.run(bad), errors.InvalidFormData, message)
    # another app's key, a token of no form, a form past its expiry
    rejected(world.run(submit(uuid4(), run_id, token)), errors.HumanInputFormNotFound)
    rejected(world.run(submit(app_id, run_id, new_form_token(run_id))),
             errors.HumanInputFormNotFound)
    rejected(world.run(submit(app_id, run_id, token, at=NOW + 3600)),
             errors.HumanInputFormExpired)
    answered = accepted(world.run(submit(app_id, run_id, token,
                                         inputs={"comment": "fine", "priority": "high",
                                                 "extra": "dropped"})),
                        workflow_run_id=str(run_id)).one(we.WorkflowHumanInputSubmitted)
    assert (answered.node_id, answered.action, answered.inputs, answered.submitted_by) == (
        "review", "approve", {"comment": "fine", "priority": "high"}, "bob")
    # one-shot: a second answer is refused, whoever sends it
    rejected(world.run(submit(app_id, run_id, token, action="reject")),
             errors.HumanInputFormSubmitted)


@covers(wc.TimeOutHumanInput)
def test_a_form_left_unanswered_past_its_expiry_times_out_once(world: World) -> None:
    app_id, run_id, token = paused_run(world)
    early = wc.TimeOutHumanInput(run_id=run_id, form_token=token, now=NOW + 3599)
    unchanged(world.run(early))
    due = wc.TimeOutHumanInput(run_id=run_id, form_token=token, now=NOW + 3600)
    timed_out = accepted(world.run(due), workflow_run_id=str(run_id), timed_out=True)
    assert timed_out.one(we.WorkflowHumanInputTimedOut).node_id == "review"
    unchanged(world.run(due))  # the job going through the same minute again
    rejected(world.run(submit(app_id, run_id, token, at=NOW)), errors.HumanInputFormExpired)
    # a form answered in time never times out
    app_id, run_id, token = paused_run(world)
    world.given(submit(app_id, run_id, token))
    unchanged(world.run(wc.TimeOutHumanInput(run_id=run_id, form_token=token, now=NOW + 7200)))
