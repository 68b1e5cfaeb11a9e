"""The workflow context's command handlers: drafts, publishing, debug snapshots, runs."""

from __future__ import annotations

from uuid import UUID, uuid4

from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowRun, WorkflowVersion
from commands.workflow.runs import start_run
from schemas import errors
from schemas.conversation.naming import end_user_id_for
from schemas.platform import commands as pc
from schemas.workflow import commands as wc
from schemas.workflow import events as we
from schemas.workflow.naming import HIDDEN_VALUE, draft_hash, new_form_token
from tests.unit.handlers.harness import World, accepted, covers, rejected, unchanged
from workflow_graph.defaults import DEFAULT_FEATURES, default_graph

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


@covers(wc.StopWorkflowRun)
def test_a_paused_run_is_stopped_at_once_and_its_form_closed(world: World) -> None:
    app_id, run_id, token = paused_run(world)
    rejected(world.run(wc.StopWorkflowRun(run_id=run_id, app_id=uuid4())),
             errors.WorkflowRunNotFound)
    stopped = accepted(world.run(wc.StopWorkflowRun(run_id=run_id, app_id=app_id)),
                       stopped=True).one(we.WorkflowRunStopped)
    assert stopped.total_steps == 0 and stopped.elapsed_time >= 0
    unchanged(world.run(wc.StopWorkflowRun(run_id=run_id, app_id=app_id)))
    rejected(world.run(submit(app_id, run_id, token)), errors.HumanInputFormNotFound)
    # a running run is the engine's to stop: nothing is recorded here
    running = start(app_id, version(world, app_id))
    world.given(running)
    unchanged(world.run(wc.StopWorkflowRun(run_id=running.run_id, app_id=app_id)))


def sync(app_id: UUID, started_from: str | None, *, graph: dict[str, object] | None = None,
         secret: str = "sealed-1", overwrite: bool = False) -> wc.SyncWorkflowDraft:
    return wc.SyncWorkflowDraft(
        app_id=app_id, graph=graph or GRAPH, features={"opening_statement": "hi"},
        environment_variables=[
            {"id": "v1", "name": "api_key", "value_type": "secret", "value": secret},
            {"id": "v2", "name": "region", "value_type": "string", "value": "eu"}],
        conversation_variables=[], hash=started_from, overwrite=overwrite)


@covers(wc.SyncWorkflowDraft)
def test_a_draft_saves_over_the_one_its_editor_started_from(world: World) -> None:
    app_id = uuid4()
    world.given(pc.CreateApp(app_id=app_id, name="Flow", mode="workflow"))
    first = accepted(world.run(sync(app_id, None))).one(we.WorkflowDraftSynced)
    assert first.hash == draft_hash(GRAPH, {"opening_statement": "hi"})
    # an editor that loaded an older draft (or none) is refused: the user reloads
    rejected(world.run(sync(app_id, "stale")), errors.DraftWorkflowNotSync)
    rejected(world.run(sync(app_id, None)), errors.DraftWorkflowNotSync)
    # the secret sent back hidden keeps its saved value (under a new name, if renamed)
    kept = sync(app_id, first.hash, secret=HIDDEN_VALUE)
    renamed = kept.model_copy(update={"environment_variables": [
        {**kept.environment_variables[0], "name": "token"}, kept.environment_variables[1]]})
    second = accepted(world.run(renamed)).one(we.WorkflowDraftSynced)
    assert second.environment_variables[0] == {"id": "v1", "name": "token",
                                               "value_type": "secret", "value": "sealed-1"}
    # an import overwrites whatever the draft is, with the plugins its DSL names, which
    # the editor's next save keeps
    graph = {**GRAPH, "nodes": [*GRAPH["nodes"],  # type: ignore[list-item]
                                {"id": "end", "data": {"type": "end", "title": "End"}}]}
    plugins = [{"type": "marketplace", "value": {"marketplace_plugin_unique_identifier": "x"}}]
    imported = accepted(world.run(sync(app_id, "anything", graph=graph, overwrite=True).model_copy(
        update={"dependencies": plugins}))).one(we.WorkflowDraftSynced)
    assert imported.dependencies == plugins
    edited = accepted(world.run(sync(app_id, imported.hash, graph=graph))).one(
        we.WorkflowDraftSynced)
    assert edited.dependencies == plugins
    # a hidden secret with nothing saved under its id is refused
    rejected(world.run(sync(app_id, None, secret=HIDDEN_VALUE, overwrite=True).model_copy(
        update={"environment_variables": [{"id": "v9", "name": "new", "value_type": "secret",
                                           "value": HIDDEN_VALUE}]})), errors.BadRequest,
             "Environment variable 'new' has no saved value to keep.")
    chat_app = world.app()
    rejected(world.run(sync(chat_app, None)), errors.AppNotFound,
             "App mode is not in the supported list: workflow, advanced-chat")
    rejected(world.run(sync(app_id, None, overwrite=True), as_=world.rival), errors.AppNotFound)


@covers(wc.PublishWorkflow)
def test_publishing_freezes_the_draft_and_the_app_runs_it(world: World) -> None:
    app_id = uuid4()
    world.given(pc.CreateApp(app_id=app_id, name="Chatflow", mode="advanced-chat"))
    # never saved: the app's draft is its mode's default (start -> llm -> answer)
    first_id = uuid4()
    published = accepted(world.run(wc.PublishWorkflow(
        app_id=app_id, workflow_id=first_id, version="2026-12-05 04:30:00.000001",
        marked_name="v1", marked_comment="first")), workflow_id=str(first_id))
    frozen = published.one(we.WorkflowVersionCreated)
    assert (frozen.kind, frozen.graph, frozen.features) == (
        "workflow", default_graph("advanced-chat"), DEFAULT_FEATURES)
    assert [n["data"]["type"] for n in frozen.graph["nodes"]] == ["start", "llm", "answer"]
    assert (frozen.marked_name, frozen.marked_comment) == ("v1", "first")
    assert published.one(we.WorkflowPublished).workflow_id == first_id
    # a saved draft is what the next version freezes, and runs start on it
    world.given(sync(app_id, None))
    second_id = uuid4()
    again = accepted(world.run(wc.PublishWorkflow(app_id=app_id, workflow_id=second_id,
                                                  version="2026-12-05 04:31:00.000001")))
    assert again.one(we.WorkflowVersionCreated).graph == GRAPH
    run = start(app_id, None)
    assert accepted(world.run(run)).outcome.result["workflow_id"] == str(second_id)
    rejected(world.run(wc.PublishWorkflow(app_id=app_id, workflow_id=uuid4(), version="x"),
                       as_=world.rival), errors.AppNotFound)


@covers(wc.SnapshotWorkflowDraft, wc.StartWorkflowRun)
def test_a_debug_run_runs_a_snapshot_of_the_draft_not_the_published_version(
        world: World) -> None:
    app_id = uuid4()
    world.given(pc.CreateApp(app_id=app_id, name="Flow", mode="workflow"))
    world.given(sync(app_id, None))
    snapshot_id = uuid4()
    snapped = accepted(world.run(wc.SnapshotWorkflowDraft(app_id=app_id,
                                                          workflow_id=snapshot_id)))
    frozen = snapped.one(we.WorkflowVersionCreated)
    assert (frozen.kind, frozen.version, frozen.graph) == ("draft", "draft", GRAPH)
    assert snapped.types == ["WorkflowVersionCreated"]  # nothing is published
    one_node = start(app_id, snapshot_id).model_copy(
        update={"triggered_from": "debugging", "node_id": "start"})
    started = accepted(world.run(one_node)).one(we.WorkflowRunStarted)
    assert (started.workflow_id, started.node_id, started.end_user_id) == (
        snapshot_id, "start", None)
    rejected(world.run(one_node.model_copy(update={"run_id": uuid4(), "node_id": "ghost"})),
             errors.WorkflowNodeNotFound)
    # the Service API cannot name a snapshot to run the draft
    rejected(world.run(start(app_id, snapshot_id)), errors.WorkflowNotFound)
    rejected(world.run(wc.SnapshotWorkflowDraft(app_id=app_id, workflow_id=uuid4()),
                       as_=world.rival), errors.AppNotFound)


@covers(wc.UpdateConversationVariable)
def test_a_conversation_variable_is_set_on_the_run_that_left_it(world: World) -> None:
    app_id = uuid4()
    world.given(pc.CreateApp(app_id=app_id, name="Tea bot", mode="advanced-chat"))
    command = start(app_id, version(world, app_id))
    conversation_id = uuid4()
    cause = uuid4()
    uow = UnitOfWork(world.store, Context(tenant_id=world.me.tenant_id, actor_id=None,
                                          correlation_id=cause, causation_id=cause))
    start_run(uow, command, uow.get(WorkflowVersion, command.workflow_id),  # type: ignore[arg-type]
              conversation_id=conversation_id, conversation_variables={"topic": "green tea"})
    uow.commit()

    def update(value: object,
               conversation: UUID = conversation_id) -> wc.UpdateConversationVariable:
        return wc.UpdateConversationVariable(run_id=command.run_id, conversation_id=conversation,
                                             name="topic", value=value, user="ann")

    ran = accepted(world.run(update("matcha")))
    assert ran.one(we.WorkflowConversationVariableUpdated) == \
        we.WorkflowConversationVariableUpdated(name="topic", value="matcha", updated_by="ann")
    history = [e.payload for e in world.store.load(command.run_id)]
    assert we.conversation_variables_left(history) == {"topic": "matcha"}
    assert world.run(update("matcha")).events == []  # unchanged: nothing recorded
    rejected(world.run(update("x", uuid4())), errors.ConversationVariableNotFound)
    rejected(world.run(update("x"), as_=world.rival), errors.AppNotFound)


@covers(wc.ExpireWorkflowRun)
def test_an_ended_run_expires_once_and_a_running_one_stays(world: World) -> None:
    app_id, run_id, _ = paused_run(world)
    unchanged(world.run(wc.ExpireWorkflowRun(run_id=run_id)))  # paused: not ended
    world.given(wc.StopWorkflowRun(run_id=run_id, app_id=app_id))
    expired = accepted(world.run(wc.ExpireWorkflowRun(run_id=run_id)), run_id=str(run_id),
                       expired=True)
    assert expired.types == ["WorkflowRunExpired"]
    unchanged(world.run(wc.ExpireWorkflowRun(run_id=run_id)))
    unchanged(world.run(wc.ExpireWorkflowRun(run_id=uuid4())))  # no such run
