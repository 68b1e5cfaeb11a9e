"""The workflow context's projectors: an app's draft, its versions and the one it runs,
read back through the queries the console routes use."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from projections.workflow import queries as wq
from projections.workflow.tables import workflow_schedules, workflow_webhooks
from projections.workflow.triggers import triggers_of_app
from schemas.workflow import events as wev
from schemas.workflow.naming import (
    published_workflow_id_for,
    trigger_id_for,
    workflow_draft_id_for,
)
from tests.unit.projectors.harness import World, exercises, stored

GRAPH = {"nodes": [{"id": "start", "data": {"type": "start", "title": "Start"}}], "edges": []}
SECRET = {"id": "v1", "name": "api_key", "value_type": "secret", "value": "sealed"}


def synced(app_id: object, text: str, by: object) -> wev.WorkflowDraftSynced:
    return wev.WorkflowDraftSynced(app_id=app_id, graph=GRAPH,
                                   features={"opening_statement": text},
                                   environment_variables=[SECRET], conversation_variables=[],
                                   hash=f"hash-{text}", synced_by=by)


@exercises(wev.WorkflowDraftSynced)
async def test_the_draft_is_its_last_save_and_keeps_its_creation(world: World) -> None:
    app_id, editor = uuid4(), uuid4()
    assert await wq.workflow_draft(world.engine, app_id) is None
    first = await world.emit("WorkflowDraft", workflow_draft_id_for(app_id),
                             synced(app_id, "one", world.actor))
    plugins = [{"type": "marketplace", "value": {"marketplace_plugin_unique_identifier": "x"}}]
    second = await world.emit("WorkflowDraft", workflow_draft_id_for(app_id),
                              synced(app_id, "two", editor).model_copy(
                                  update={"dependencies": plugins}))
    draft = await wq.workflow_draft(world.engine, app_id)
    assert draft is not None
    assert (draft["id"], draft["hash"], draft["features"]) == (
        workflow_draft_id_for(app_id), "hash-two", {"opening_statement": "two"})
    assert draft["environment_variables"] == [SECRET]  # sealed, as recorded
    assert draft["dependencies"] == plugins
    assert (draft["created_by"], draft["created_at"]) == (world.actor, stored(first))
    assert (draft["updated_by"], draft["updated_at"]) == (editor, stored(second))


def version(app_id: object, kind: str, name: str = "") -> wev.WorkflowVersionCreated:
    return wev.WorkflowVersionCreated(
        app_id=app_id, kind=kind, version="draft" if kind == "draft" else f"v-{name}",
        graph=GRAPH, features={}, environment_variables=[], conversation_variables=[],
        created_by=None, marked_name=name)


@exercises(wev.WorkflowVersionCreated, wev.WorkflowPublished)
async def test_versions_are_listed_newest_first_and_the_published_one_is_found(
        world: World) -> None:
    app_id = uuid4()
    assert await wq.published_workflow(world.engine, app_id) is None
    ids = [uuid4() for _ in range(3)]
    for workflow_id, name in zip(ids, ["a", "", "c"], strict=True):
        await world.emit("WorkflowVersion", workflow_id, version(app_id, "workflow", name))
    snapshot = uuid4()  # a debug run's snapshot is no published version
    await world.emit("WorkflowVersion", snapshot, version(app_id, "draft"))
    await world.emit("WorkflowVersion", uuid4(), version(uuid4(), "workflow", "other app"))
    first, more = await wq.published_versions(world.engine, app_id, page=1, limit=2)
    assert [r["id"] for r in first] == [ids[2], ids[1]] and more
    rest, more = await wq.published_versions(world.engine, app_id, page=2, limit=2)
    assert [r["id"] for r in rest] == [ids[0]] and not more
    named, _ = await wq.published_versions(world.engine, app_id, page=1, limit=10,
                                           named_only=True)
    assert [r["marked_name"] for r in named] == ["c", "a"]
    assert (await wq.workflow_version(world.engine, app_id, snapshot))["kind"] == "draft"  # type: ignore[index]
    assert await wq.workflow_version(world.engine, uuid4(), snapshot) is None

    runs = published_workflow_id_for(app_id)
    await world.emit("PublishedWorkflow", runs, wev.WorkflowPublished(
        app_id=app_id, workflow_id=ids[0], published_by=world.actor))
    published = await world.emit("PublishedWorkflow", runs, wev.WorkflowPublished(
        app_id=app_id, workflow_id=ids[2], published_by=world.actor))
    found = await wq.published_workflow(world.engine, app_id)
    assert found is not None
    assert (found["id"], found["marked_name"], found["published_at"]) == (
        ids[2], "c", stored(published))


TRIGGERED = {"nodes": [
    {"id": "tick", "data": {"type": "trigger-schedule", "title": "Nine", "mode": "cron",
                            "cron_expression": "0 9 * * *", "timezone": "Europe/Berlin"}},
    {"id": "hook", "data": {"type": "trigger-webhook", "title": "Hook", "method": "post"}},
    {"id": "end", "data": {"type": "end", "title": "End"}}], "edges": []}


@exercises(wev.WorkflowVersionCreated, wev.WorkflowPublished, wev.WorkflowRunStarted)
async def test_a_published_workflows_triggers_and_a_scheduled_run_moving_its_schedule_on(
        world: World) -> None:
    app_id, v1, v2 = uuid4(), uuid4(), uuid4()
    publishes = published_workflow_id_for(app_id)

    async def schedules() -> list[tuple[str, datetime]]:
        return [(r["node_id"], r["next_fire_at"]) for r in await world.rows(
            workflow_schedules, workflow_schedules.c.app_id == app_id)]

    # the publish applied before its version (other aggregates): the rows come with the version
    await world.emit("PublishedWorkflow", publishes, wev.WorkflowPublished(
        app_id=app_id, workflow_id=v1, published_by=world.actor))
    assert await schedules() == []
    await world.emit("WorkflowVersion", v1, version(app_id, "workflow").model_copy(
        update={"graph": TRIGGERED}))
    # its first tick after the publish (T0 is 09:00 UTC, 10:00 in Berlin): the next day's
    assert await schedules() == [("tick", datetime(2025, 3, 2, 8, 0))]
    [hook] = await world.rows(workflow_webhooks, workflow_webhooks.c.app_id == app_id)
    assert (hook["id"], hook["node_id"], hook["workflow_id"], hook["config"]["method"]) == (
        trigger_id_for(app_id, "hook"), "hook", v1, "post")
    assert [t["node_id"] for t in await triggers_of_app(world.engine, app_id)] == ["tick", "hook"]

    async def scheduled_run(tick: datetime) -> None:
        await world.emit("WorkflowRun", uuid4(), wev.WorkflowRunStarted(
            app_id=app_id, workflow_id=v1, task_id=uuid4(), mode="workflow",
            triggered_from="schedule", user=str(world.actor), end_user_id=None,
            inputs={"current_time": tick.isoformat()}, system={}, root_node_id="tick",
            scheduled_at=tick))

    await scheduled_run(datetime(2025, 3, 2, 8, 0, tzinfo=UTC))
    assert await schedules() == [("tick", datetime(2025, 3, 3, 8, 0))]
    await scheduled_run(datetime(2025, 3, 1, 8, 0, tzinfo=UTC))  # an older run, applied late
    assert await schedules() == [("tick", datetime(2025, 3, 3, 8, 0))]

    # a version without triggers published: nothing fires or answers any more
    await world.emit("WorkflowVersion", v2, version(app_id, "workflow"))
    await world.emit("PublishedWorkflow", publishes, wev.WorkflowPublished(
        app_id=app_id, workflow_id=v2, published_by=world.actor))
    assert await schedules() == []
    assert await world.rows(workflow_webhooks, workflow_webhooks.c.app_id == app_id) == []
