"""The workflow engine on the in-memory node (tests/memory.py): published workflows run by
the engine's processor on the memory bus, through the real Service API routes, blocking and
streaming; the events on the run's task stream as Dify's spec has them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from argon2 import PasswordHasher

from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowRun
from events.listing import EventFilter
from events.memory_store import InMemoryEventStore
from events.replay import Replay
from gateway import auth as gateway_auth
from schemas.conversation.naming import FACT_FIELD, task_stream_key
from schemas.workflow import events as ev
from schemas.workflow.naming import node_execution_id, node_idempotency_key
from tests.chat import app_with_key, sse_events
from tests.harness import Node, eventually
from tests.memory import memory_app
from tests.spec import chat_event_schema, validate
from tests.workflows import (
    Gate,
    check_workflow_events,
    edge,
    end_outputs,
    executors_on,
    graph,
    graph_node,
    publish,
    publish_in_console,
    tenant_of,
    text_input,
    through,
)
from workers.groups import declared_groups
from workers.workflow.nodes.base import (
    Executor,
    HumanInputRequired,
    NodeCall,
    NodeError,
    NodeResult,
)
from workers.workflow.nodes.pure import run_pure
from workers.workflow.processors import fail_overdue_runs

GREETING = graph(
    [graph_node("start", "start", variables=[text_input("name"), text_input("mood", False)]),
     graph_node("check", "if-else", cases=[{"case_id": "happy", "logical_operator": "and",
                                      "conditions": [{
                                          "variable_selector": ["start", "mood"],
                                          "comparison_operator": "is", "value": "happy"}]}]),
     graph_node("cheer", "answer", answer="Great to see you, {{#start.name#}}!"),
     graph_node("plain", "answer", answer="Hello {{#start.name#}}."),
     graph_node("end_happy", "end", outputs=end_outputs(("greeting", ["cheer", "answer"]))),
     graph_node("end_plain", "end", outputs=end_outputs(("greeting", ["plain", "answer"])))],
    [edge("start", "check"), edge("check", "cheer", "happy"), edge("check", "plain", "false"),
     edge("cheer", "end_happy"), edge("plain", "end_plain")])


@pytest.fixture
async def auth(node: Node) -> dict[str, str]:
    return await node.setup_and_login()


async def workflow_app(node_: Node, auth: dict[str, str], dsl: dict[str, Any]
                       ) -> tuple[str, dict[str, str]]:
    """A workflow app publishing `dsl`, and its Service API key."""
    app_id, key = await app_with_key(node_, auth, mode="workflow", name="Greeter")
    await publish_in_console(node_, auth, app_id, dsl)
    return app_id, key


async def run(node_: Node, key: dict[str, str], inputs: dict[str, Any],
              mode: str = "blocking", path: str = "/v1/workflows/run") -> Any:
    return await node_.client.post(path, headers=key, json={
        "inputs": inputs, "user": "ann", "response_mode": mode})


async def test_a_published_workflow_runs_blocking_and_streaming(
        node: Node, auth: dict[str, str]) -> None:
    _, key = await workflow_app(node, auth, GREETING)
    blocking = await run(node, key, {"name": "Ann", "mood": "happy"})
    assert blocking.status_code == 200, blocking.text
    validate("WorkflowBlockingResponse", blocking.json())
    data = blocking.json()["data"]
    assert data["status"] == "succeeded" and data["error"] is None
    assert data["outputs"] == {"greeting": "Great to see you, Ann!"}
    assert data["total_steps"] == 4

    streaming = await run(node, key, {"name": "Bob"}, mode="streaming")
    assert streaming.status_code == 200
    events = [e for _, e in sse_events(streaming.content)]
    check_workflow_events(events)
    assert [(e["event"], e["data"].get("node_id")) for e in events] == [
        ("workflow_started", None),
        ("node_started", "start"), ("node_finished", "start"),
        ("node_started", "check"), ("node_finished", "check"),
        ("node_started", "plain"), ("node_finished", "plain"),
        ("node_started", "end_plain"), ("node_finished", "end_plain"),
        ("workflow_finished", None)]
    assert events[-1]["data"]["outputs"] == {"greeting": "Hello Bob."}
    assert events[4]["data"]["outputs"]["selected_case_id"] == "false"
    assert [e["data"]["index"] for e in events if e["event"] == "node_started"] == [1, 2, 3, 4]


@pytest.fixture
def executors(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Executor], None]:
    return executors_on(monkeypatch)


async def events_of(node_: Node, key: dict[str, str], inputs: dict[str, Any]
                    ) -> list[dict[str, Any]]:
    response = await run(node_, key, inputs, mode="streaming")
    assert response.status_code == 200, response.text
    events = [e for _, e in sse_events(response.content)]
    check_workflow_events(events)
    return events


def stored_run(node_: Node, run_id: str) -> list[Any]:
    return node_.container.store.load(UUID(run_id))


# --- the Service API's edges ----------------------------------------------------------------


async def test_inputs_are_checked_against_the_start_node_before_anything_runs(
        node: Node, auth: dict[str, str]) -> None:
    dsl = graph([graph_node("start", "start", variables=[
        text_input("name", max_length=5),
        {"variable": "size", "label": "Size", "type": "select", "required": True,
         "options": ["S", "M"]},
        {"variable": "count", "label": "Count", "type": "number", "required": False}]),
        graph_node("end", "end", outputs=end_outputs(("count", ["start", "count"])))],
        [edge("start", "end")])
    _, key = await workflow_app(node, auth, dsl)
    for inputs, message in [
            ({"size": "S"}, "name is required in input form"),
            ({"name": 5, "size": "S"}, "(type 'text-input') name in input form must be a string"),
            ({"name": "Annabelle", "size": "S"},
             "name in input form must be less than 5 characters"),
            ({"name": "Ann", "size": "XL"},
             "size in input form must be one of the following: ['S', 'M']"),
            ({"name": "Ann", "size": "S", "count": "many"},
             "count in input form must be a valid number")]:
        refused = await run(node, key, inputs)
        assert refused.status_code == 400, refused.text
        assert refused.json() == {"code": "invalid_param", "message": message, "status": 400}
    accepted = await run(node, key, {"name": "Ann", "size": "M", "count": "3"})
    assert accepted.json()["data"]["outputs"] == {"count": 3}


async def test_only_workflow_apps_with_a_published_version_run(
        node: Node, auth: dict[str, str]) -> None:
    _, chat_key = await app_with_key(node, auth, mode="chat")
    refused = await run(node, chat_key, {})
    assert (refused.status_code, refused.json()["code"]) == (400, "not_workflow_app")
    stop = await node.client.post(f"/v1/workflows/tasks/{uuid4()}/stop", headers=chat_key,
                                  json={"user": "ann"})
    assert stop.json()["code"] == "not_workflow_app"

    app_id, key = await app_with_key(node, auth, mode="workflow", name="Unpublished")
    unpublished = await run(node, key, {})
    assert (unpublished.status_code, unpublished.json()["code"]) == (400, "app_unavailable")

    workflow_id = await publish_in_console(node, auth, app_id, GREETING)
    by_id = await run(node, key, {"name": "Cy"}, path=f"/v1/workflows/{workflow_id}/run")
    assert by_id.json()["data"]["workflow_id"] == str(workflow_id)
    unknown = await run(node, key, {"name": "Cy"}, path=f"/v1/workflows/{uuid4()}/run")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    garbage = await run(node, key, {"name": "Cy"}, path="/v1/workflows/not-an-id/run")
    assert (garbage.status_code, garbage.json()["code"]) == (400, "bad_request")


async def test_a_runs_events_are_read_again_after_last_event_id(
        node: Node, auth: dict[str, str]) -> None:
    _, key = await workflow_app(node, auth, GREETING)
    first = await run(node, key, {"name": "Di"}, mode="streaming")
    ids = [i for i, _ in sse_events(first.content)]
    run_id = sse_events(first.content)[0][1]["workflow_run_id"]
    path = f"/v1/workflow/{run_id}/events"
    again = await node.client.get(path, headers=key, params={"user": "ann"})
    assert [i for i, _ in sse_events(again.content)] == ids
    rest = await node.client.get(path, headers={**key, "Last-Event-ID": ids[3]},
                                 params={"user": "ann"})
    assert [i for i, _ in sse_events(rest.content)] == ids[4:]
    closed = await node.client.get(path, headers={**key, "Last-Event-ID": ids[-1]},
                                   params={"user": "ann"})
    assert [e["event"] for _, e in sse_events(closed.content)] == ["workflow_finished"]
    never = await node.client.get(path, headers={**key, "Last-Event-ID": "1-0"},
                                  params={"user": "ann"})
    assert (never.status_code, never.json()["code"]) == (400, "invalid_param")
    others = await node.client.get(path, headers=key, params={"user": "bob"})
    assert others.status_code == 404

    # the stream expired: the run's end alone, from its history
    task_id = sse_events(first.content)[0][1]["task_id"]
    await node.container.kv.delete(task_stream_key(UUID(task_id)))
    expired = await node.client.get(path, headers=key, params={"user": "ann"})
    events = [e for _, e in sse_events(expired.content)]
    check_workflow_events(events)
    assert [(e["event"], e["data"]["status"]) for e in events] == [
        ("workflow_finished", "succeeded")]
    assert events[0]["data"]["outputs"] == {"greeting": "Hello Di."}


# --- stop, limits, error strategies ---------------------------------------------------------


async def test_a_stop_from_another_request_cancels_the_running_node(
        node: Node, auth: dict[str, str],
        executors: Callable[[str, Executor], None]) -> None:
    gate = Gate()
    executors("code", gate)
    _, key = await workflow_app(node, auth, through("code"))
    running = asyncio.create_task(run(node, key, {}))
    await asyncio.wait_for(gate.entered.wait(), 10)
    task_id = gate.calls[0].run.task_id
    stop = await node.client.post(f"/v1/workflows/tasks/{task_id}/stop", headers=key,
                                  json={"user": "someone-else"})
    assert stop.json() == {"result": "success"}
    answer = (await asyncio.wait_for(running, 10)).json()
    validate("WorkflowBlockingResponse", answer)
    assert answer["data"]["status"] == "stopped"
    history = [e.type for e in stored_run(node, answer["workflow_run_id"])]
    assert history[-1] == "WorkflowRunStopped" and "WorkflowNodeSucceeded" in history
    assert history.count("WorkflowNodeSucceeded") == 1  # the start node's, not the gated one


async def test_a_failing_node_is_retried_as_its_strategy_says(
        node: Node, auth: dict[str, str],
        executors: Callable[[str, Executor], None]) -> None:
    attempts: list[int] = []

    async def flaky(call: NodeCall) -> NodeResult:
        attempts.append(call.attempt)
        if len(attempts) < 3:
            raise NodeError(f"busy ({len(attempts)})", "HTTPResponseCodeError")
        return NodeResult(outputs={"result": "third time"})

    executors("http-request", flaky)
    app_id, key = await workflow_app(node, auth, through("http-request", retry_config={
        "retry_enabled": True, "max_retries": 3, "retry_interval": 10}))
    events = await events_of(node, key, {})
    retries = [e["data"] for e in events if e["event"] == "node_retry"]
    assert [(r["error"], r["retry_index"]) for r in retries] == [("busy (1)", 0),
                                                                ("busy (2)", 1)]
    assert attempts == [0, 1, 2]
    assert events[-1]["data"]["outputs"] == {"result": "third time"}

    attempts.clear()
    await publish_in_console(node, auth, app_id, through("http-request", retry_config={
        "retry_enabled": True, "max_retries": 1, "retry_interval": 10}))
    exhausted = (await run(node, key, {})).json()
    assert exhausted["data"]["status"] == "failed"
    assert exhausted["data"]["error"] == "node 'work' failed: busy (2)"


async def test_fail_branch_and_default_value_strategies_go_on_after_a_failure(
        node: Node, auth: dict[str, str]) -> None:
    search = {"provider_id": "tavily", "provider_name": "tavily", "tool_name": "search"}
    dsl = graph([
        graph_node("start", "start", variables=[]),
        graph_node("search", "tool", "Search", error_strategy="fail-branch", **search),
        graph_node("found", "answer", answer="found"),
        graph_node("fallback", "answer", answer="fallback: {{#search.error_type#}}"),
        graph_node("lookup", "tool", "Lookup", error_strategy="default-value",
             default_value=[{"key": "text", "type": "string", "value": "n/a"}], **search),
        graph_node("end", "end", outputs=end_outputs(("fallback", ["fallback", "answer"]),
                                               ("text", ["lookup", "text"])))],
        [edge("start", "search"), edge("search", "found"),
         edge("search", "fallback", "fail-branch"), edge("fallback", "lookup"),
         edge("lookup", "end")])
    app_id, key = await workflow_app(node, auth, dsl)
    events = await events_of(node, key, {})
    finished = {e["data"]["node_id"]: e["data"] for e in events if e["event"] == "node_finished"}
    assert "found" not in finished
    assert finished["search"]["status"] == "exception"
    assert "needs a plugin (tavily) that is not installed" in finished["search"]["error"]
    assert finished["lookup"]["outputs"]["text"] == "n/a"
    assert events[-1]["data"]["status"] == "partial-succeeded"  # as the read model says
    assert events[-1]["data"]["exceptions_count"] == 2
    assert events[-1]["data"]["outputs"] == {"fallback": "fallback: PluginNotInstalled",
                                             "text": "n/a"}
    # its stream expired: the end told again from its history says the same
    await node.container.kv.delete(task_stream_key(UUID(events[0]["task_id"])))
    again = await node.client.get(f"/v1/workflow/{events[0]['workflow_run_id']}/events",
                                  headers=key, params={"user": "ann"})
    [ended] = [e for _, e in sse_events(again.content)]
    assert (ended["data"]["status"], ended["data"]["exceptions_count"]) == (
        "partial-succeeded", 2)

    # without a strategy, the failure ends the run
    plain = graph([graph_node("start", "start", variables=[]),
                   graph_node("search", "tool", "Search", **search),
                   graph_node("end", "end", outputs=[])],
                  [edge("start", "search"), edge("search", "end")])
    await publish_in_console(node, auth, app_id, plain)
    failed = (await run(node, key, {})).json()["data"]
    assert failed["status"] == "failed"
    assert failed["error"] == ("node 'search' failed: tool node 'Search' needs a plugin "
                               "(tavily) that is not installed")


# --- limits, secrets, large outputs (a node with small limits) ------------------------------


@pytest.fixture
async def strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    """A node whose runs may take 3 steps and 1 second, with events inlining 1 KiB."""
    monkeypatch.setattr(gateway_auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                                parallelism=1))
    async with memory_app(tmp_path, WORKFLOW_MAX_EXECUTION_STEPS=3,
                          WORKFLOW_MAX_EXECUTION_TIME=1,
                          WORKFLOW_EVENT_INLINE_BYTES=1024) as n:
        yield n


ECHO = graph([graph_node("start", "start", variables=[text_input("name")]),
              graph_node("say", "answer", answer="Dear {{#start.name#}}"),
              graph_node("end", "end", outputs=end_outputs(("said", ["say", "answer"])))],
             [edge("start", "say"), edge("say", "end")])


async def test_runs_end_failed_past_their_steps_or_time(
        strict: Node, executors: Callable[[str, Executor], None]) -> None:
    auth = await strict.setup_and_login()
    app_id, key = await workflow_app(strict, auth, GREETING)  # 4 steps
    too_long = (await run(strict, key, {"name": "Ed"})).json()["data"]
    assert (too_long["status"], too_long["error"]) == ("failed", "Max steps 3 reached.")

    gate = Gate()
    executors("code", gate)
    await publish_in_console(strict, auth, app_id, through("code"))
    too_slow = (await run(strict, key, {})).json()["data"]
    assert (too_slow["status"], too_slow["error"]) == ("failed",
                                                       "Max execution time 1s reached.")
    assert len(gate.calls) == 1


async def test_large_outputs_are_kept_in_storage_and_referenced(strict: Node) -> None:
    auth = await strict.setup_and_login()
    _, key = await workflow_app(strict, auth, ECHO)
    name = "x" * 3000
    answer = (await run(strict, key, {"name": name})).json()
    assert answer["data"]["outputs"] == {"said": f"Dear {name}"}
    history = {e.type: e.payload for e in stored_run(strict, answer["workflow_run_id"])}
    ended = history["WorkflowRunSucceeded"]
    assert ended.outputs == {} and ended.outputs_ref is not None
    kept = orjson.loads(await strict.container.storage.load(ended.outputs_ref))
    assert kept == {"said": f"Dear {name}"}
    # read again once its stream expired: the run's end, its outputs loaded back
    await strict.container.kv.delete(task_stream_key(UUID(answer["task_id"])))
    again = await strict.client.get(f"/v1/workflow/{answer['workflow_run_id']}/events",
                                    headers=key, params={"user": "ann"})
    (end,) = [e for _, e in sse_events(again.content)]
    assert end["data"]["outputs"] == {"said": f"Dear {name}"}


async def test_secret_environment_variables_are_masked_in_events_and_streams(
        node: Node, auth: dict[str, str]) -> None:
    secret = "sk-live-0123456789abcdef"
    dsl = graph([graph_node("start", "start", variables=[]),
                 graph_node("say", "answer", answer="{{#env.region#}} {{#env.api_key#}}"),
                 graph_node("end", "end", outputs=end_outputs(("said", ["say", "answer"])))],
                [edge("start", "say"), edge("say", "end")])
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Secretive")
    await publish_in_console(node, auth, app_id, dsl, secrets={"api_key": secret},
            environment=[{"name": "region", "value": "eu", "value_type": "string"}])
    events = await events_of(node, key, {})
    assert events[-1]["data"]["outputs"] == {"said": "eu ******"}
    assert secret not in orjson.dumps(events).decode()
    recorded = [e.to_json() for e in node.container.store.read_from(0, 10_000)]
    assert recorded and not any(secret.encode() in e for e in recorded)
    streamed = await node.container.kv.read(task_stream_key(UUID(events[0]["task_id"])), "0",
                                            count=1000, block_ms=0)
    assert streamed and not any(secret.encode() in entry for _, entry in streamed)


# --- takeover, pause and resume, single-node runs -------------------------------------------


def record(node_: Node, app_id: str, run_id: UUID, *payloads: Any) -> None:
    """Events of a run, recorded as the engine (or the form routes) would."""
    ctx = Context(tenant_id=tenant_of(node_, app_id), actor_id=None, correlation_id=uuid4(),
                  causation_id=uuid4())
    uow = UnitOfWork(node_.container.store, ctx)
    run_ = uow.get(WorkflowRun, run_id)
    for payload in payloads:
        if isinstance(payload, ev.WorkflowRunStarted):
            run_.start(payload, ctx)
        else:
            assert run_.note(payload, ctx)
    uow.commit()


def started_run(app_id: str, workflow_id: UUID, run_id: UUID, task_id: UUID,
                **more: Any) -> ev.WorkflowRunStarted:
    return ev.WorkflowRunStarted(
        app_id=UUID(app_id), workflow_id=workflow_id, task_id=task_id,
        mode=more.pop("mode", "workflow"), triggered_from="app-run", user="ann",
        end_user_id=None, inputs=more.pop("inputs", {}), system={}, **more)


async def stream_of(node_: Node, task_id: UUID, until: str = "workflow_finished"
                    ) -> list[dict[str, Any]]:
    async def closed() -> list[dict[str, Any]] | None:
        read = await node_.container.kv.read(task_stream_key(task_id), "0", count=1000,
                                             block_ms=0)
        events = [orjson.loads(entry) for _, entry in read]
        return events if events and events[-1]["event"] == until else None
    return await eventually(closed, interval=0.02)  # type: ignore[no-any-return]


async def test_a_run_taken_over_restarts_only_its_node_in_flight(
        node: Node, auth: dict[str, str], executors: Callable[[str, Executor], None]) -> None:
    """A member died after recording the start node's result and the next node's start,
    having streamed only the run's start: the next member runs only the interrupted node
    (attempt 1, same idempotency key) and what follows, and streams every fact once."""
    starts: list[NodeCall] = []

    async def counted_start(call: NodeCall) -> NodeResult:
        starts.append(call)
        return await run_pure(call)

    gate = Gate()
    gate.release.set()
    executors("start", counted_start)
    executors("code", gate)
    app_id, _ = await app_with_key(node, auth, mode="workflow", name="Taken over")
    workflow_id = await publish_in_console(node, auth, app_id, through("code"))
    run_id, task_id = uuid4(), uuid4()
    await node.container.kv.append(task_stream_key(task_id), [orjson.dumps({
        "event": "workflow_started", "task_id": str(task_id), "workflow_run_id": str(run_id),
        "data": {}, FACT_FIELD: 1})], ttl=600)
    record(node, app_id, run_id, started_run(app_id, workflow_id, run_id, task_id),
           ev.WorkflowNodeStarted(node_id="start", node_type="start", title="start",
                                  execution_id=node_execution_id(run_id, "start"), index=1),
           ev.WorkflowNodeSucceeded(node_id="start",
                                    execution_id=node_execution_id(run_id, "start")),
           ev.WorkflowNodeStarted(node_id="work", node_type="code", title="work",
                                  execution_id=node_execution_id(run_id, "work"), index=2,
                                  predecessor_node_id="start"))
    events = await stream_of(node, task_id)
    assert [(e["event"], e.get("data", {}).get("node_id")) for e in events] == [
        ("workflow_started", None), ("node_started", "start"), ("node_finished", "start"),
        ("node_started", "work"), ("node_finished", "work"), ("node_started", "end"),
        ("node_finished", "end"), ("workflow_finished", None)]
    assert starts == []
    assert [(c.attempt, c.idempotency_key) for c in gate.calls] == [
        (1, node_idempotency_key(run_id, "work"))]
    assert events[-1]["data"]["outputs"] == {"result": "done"}


# as the human-input executor builds it (workers/workflow/nodes/human_input.py)
HUMAN_FORM = {"node_id": "review", "node_title": "Review", "form_content": "Approve the draft?",
              "inputs": [{"type": "paragraph", "output_variable_name": "comment",
                          "default": None}],
              "user_actions": [{"id": "approve", "title": "Approve", "button_style": "primary"},
                               {"id": "reject", "title": "Reject", "button_style": "default"}],
              "resolved_default_values": {}, "options": {}}


async def test_a_paused_run_resumes_from_the_submitted_form(
        node: Node, auth: dict[str, str], executors: Callable[[str, Executor], None]) -> None:
    asked: list[NodeCall] = []

    async def ask(call: NodeCall) -> NodeResult:
        asked.append(call)
        raise HumanInputRequired(HUMAN_FORM, timeout_seconds=3600)

    executors("human-input", ask)
    dsl = graph([graph_node("start", "start", variables=[]),
                 graph_node("review", "human-input", "Review"),
                 graph_node("yes", "answer", answer="approved: {{#review.comment#}}"),
                 graph_node("no", "answer", answer="rejected"),
                 graph_node("end", "end", outputs=end_outputs(("verdict", ["yes", "answer"])))],
                [edge("start", "review"), edge("review", "yes", "approve"),
                 edge("review", "no", "reject"), edge("yes", "end")])
    app_id, key = await workflow_app(node, auth, dsl)
    paused = await run(node, key, {}, mode="streaming")
    events = [e for _, e in sse_events(paused.content)]
    check_workflow_events(events)
    assert [e["event"] for e in events][-2:] == ["human_input_required", "workflow_paused"]
    required = events[-2]["data"]
    assert required["form_content"] == "Approve the draft?" and required["form_token"]
    run_id = UUID(events[0]["workflow_run_id"])
    assert stored_run(node, str(run_id))[-1].type == "WorkflowRunPaused"

    record(node, app_id, run_id, ev.WorkflowHumanInputSubmitted(
        node_id="review", form_token=required["form_token"], action="approve",
        inputs={"comment": "looks good"}, submitted_by="ann"))
    # Until the engine takes the submission up, a resume would end at workflow_paused again.
    async def resumed_and_ended() -> bool:
        return bool(stored_run(node, str(run_id))[-1].type == "WorkflowRunSucceeded")

    await eventually(resumed_and_ended)
    ids = [i for i, _ in sse_events(paused.content)]
    # after the pause, following the run on (a pause ends a stream unless asked not to)
    rest = await node.client.get(f"/v1/workflow/{run_id}/events", params={
        "user": "ann", "continue_on_pause": "true"}, headers={**key, "Last-Event-ID": ids[-1]})
    resumed = [e for _, e in sse_events(rest.content)]
    check_workflow_events(resumed)
    assert [(e["event"], e["data"].get("node_id")) for e in resumed] == [
        ("human_input_form_filled", "review"), ("node_finished", "review"),
        ("node_started", "yes"), ("node_finished", "yes"), ("node_started", "end"),
        ("node_finished", "end"), ("workflow_finished", None)]
    assert resumed[1]["data"]["outputs"] == {"comment": "looks good", "action_id": "approve",
                                             "__action_id": "approve"}
    assert resumed[-1]["data"]["outputs"] == {"verdict": "approved: looks good"}
    assert len(asked) == 1  # the form's answer is recorded, the node is not asked again

    # a form left unanswered: the run goes on along the node's timeout branch
    await publish_in_console(node, auth, app_id, graph(
        [graph_node("start", "start", variables=[]),
         graph_node("review", "human-input", "Review"),
         graph_node("late", "answer", answer="no answer"),
         graph_node("end", "end", outputs=end_outputs(("verdict", ["late", "answer"])))],
        [edge("start", "review"), edge("review", "late", "timeout"), edge("late", "end")]))
    waiting = (await run(node, key, {})).json()
    validate("WorkflowBlockingResponse", waiting)
    assert waiting["data"]["status"] == "paused"
    run_id = UUID(waiting["workflow_run_id"])
    token = stored_run(node, str(run_id))[-1].payload.form_token
    record(node, app_id, run_id, ev.WorkflowHumanInputTimedOut(node_id="review",
                                                               form_token=token))
    events = await stream_of(node, UUID(waiting["task_id"]))
    check_workflow_events(events)
    assert "human_input_form_timeout" in [e["event"] for e in events]
    assert events[-1]["data"]["outputs"] == {"verdict": "no answer"}


async def test_a_paused_run_stopped_ends_stopped_at_once(
        node: Node, auth: dict[str, str], executors: Callable[[str, Executor], None]) -> None:
    """No member holds a paused run, so nothing would see the stop request until the form is
    answered: the stop itself ends the run, its stream says so, and its form is gone."""
    async def ask(call: NodeCall) -> NodeResult:
        raise HumanInputRequired(HUMAN_FORM, timeout_seconds=3600)

    executors("human-input", ask)
    _, key = await workflow_app(node, auth, graph(
        [graph_node("start", "start", variables=[]),
         graph_node("review", "human-input", "Review"),
         graph_node("yes", "answer", answer="approved"),
         graph_node("end", "end", outputs=end_outputs(("verdict", ["yes", "answer"])))],
        [edge("start", "review"), edge("review", "yes", "approve"), edge("yes", "end")]))
    waiting = (await run(node, key, {})).json()
    assert waiting["data"]["status"] == "paused"
    run_id = waiting["workflow_run_id"]
    token = stored_run(node, run_id)[-1].payload.form_token

    stop = await node.client.post(f"/v1/workflows/tasks/{waiting['task_id']}/stop",
                                  headers=key, json={"user": "ann"})
    assert stop.json() == {"result": "success"}
    assert stored_run(node, run_id)[-1].type == "WorkflowRunStopped"
    events = await stream_of(node, UUID(waiting["task_id"]))
    check_workflow_events(events)
    assert events[-1]["data"]["status"] == "stopped"
    assert events[-1]["data"]["total_steps"] == 2
    late = await node.client.post(f"/v1/form/human_input/{token}", headers=key,
                                  json={"action": "approve", "inputs": {}, "user": "ann"})
    assert late.status_code == 404
    assert [e.type for e in stored_run(node, run_id)].count("WorkflowRunStopped") == 1


async def test_a_stop_asked_while_the_run_pauses_ends_it_stopped(
        node: Node, auth: dict[str, str], executors: Callable[[str, Executor], None]) -> None:
    """The stop arrives after the engine last looked and before the pause is recorded: the
    stop command finds the run still running (nothing to end), so the engine, recording the
    pause, sees the request and ends the run then, not when its form is answered."""
    key: dict[str, str] = {}

    async def ask_and_be_stopped(call: NodeCall) -> NodeResult:
        stop = await node.client.post(f"/v1/workflows/tasks/{call.run.task_id}/stop",
                                      headers=key, json={"user": "ann"})
        assert stop.json() == {"result": "success"}
        raise HumanInputRequired(HUMAN_FORM, timeout_seconds=3600)

    executors("human-input", ask_and_be_stopped)
    _, app_key = await workflow_app(node, auth, graph(
        [graph_node("start", "start", variables=[]),
         graph_node("review", "human-input", "Review"),
         graph_node("end", "end", outputs=[])],
        [edge("start", "review"), edge("review", "end", "approve")]))
    key.update(app_key)
    answer = (await run(node, key, {})).json()
    events = await stream_of(node, UUID(answer["task_id"]))  # past the pause, to the end
    assert events[-1]["data"]["status"] == "stopped"
    assert [e.type for e in stored_run(node, answer["workflow_run_id"])][-2:] == [
        "WorkflowRunPaused", "WorkflowRunStopped"]


async def test_a_single_node_runs_alone_on_the_given_variables(
        node: Node, auth: dict[str, str]) -> None:
    app_id, _ = await app_with_key(node, auth, mode="workflow", name="Debugged")
    workflow_id = await publish_in_console(node, auth, app_id, GREETING)
    run_id, task_id = uuid4(), uuid4()
    record(node, app_id, run_id, started_run(app_id, workflow_id, run_id, task_id,
                                             inputs={"#start.mood#": "happy"},
                                             node_id="check"))
    events = await stream_of(node, task_id)
    assert [(e["event"], e.get("data", {}).get("node_id")) for e in events] == [
        ("workflow_started", None), ("node_started", "check"), ("node_finished", "check"),
        ("workflow_finished", None)]
    assert events[-1]["data"]["outputs"] == {"result": True, "selected_case_id": "happy"}


async def test_a_run_nested_deeper_than_the_call_depth_limit_fails(
        node: Node, auth: dict[str, str]) -> None:
    app_id, _ = await app_with_key(node, auth, mode="workflow", name="Nested")
    workflow_id = await publish_in_console(node, auth, app_id, GREETING)
    run_id, task_id = uuid4(), uuid4()
    depth = node.container.settings.WORKFLOW_CALL_MAX_DEPTH + 1
    record(node, app_id, run_id, started_run(app_id, workflow_id, run_id, task_id,
                                             call_depth=depth, inputs={"name": "Gus"}))
    events = await stream_of(node, task_id)
    assert [e["event"] for e in events] == ["workflow_started", "workflow_finished"]
    assert events[-1]["data"]["error"] == (
        f"Max workflow call depth {depth - 1} reached.")


async def test_a_run_whose_message_keeps_failing_ends_failed(
        node: Node, auth: dict[str, str]) -> None:
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Broken")
    # a version the console would refuse now (stored by an older release, say)
    publish(node, app_id, {"nodes": [{"id": "start", "data": "not a mapping"}], "edges": []})
    answer = (await run(node, key, {})).json()
    assert answer["data"]["status"] == "failed"
    assert "could not be executed" in answer["data"]["error"]


async def test_parallel_branches_nest_no_deeper_than_the_limit(
        node: Node, auth: dict[str, str]) -> None:
    def fanning(levels: int) -> dict[str, Any]:
        """start fans out to two answers, the first of which fans out again, `levels` deep;
        every branch ends at the end node."""
        nodes = [graph_node("start", "start", variables=[]),
                 graph_node("end", "end", outputs=[])]
        edges, parent = [], "start"
        for level in range(levels):
            first, second = f"l{level}a", f"l{level}b"
            nodes += [graph_node(first, "answer", answer=first),
                      graph_node(second, "answer", answer=second)]
            edges += [edge(parent, first), edge(parent, second), edge(second, "end")]
            parent = first
        return graph(nodes, [*edges, edge(parent, "end")])

    app_id, key = await workflow_app(node, auth, fanning(3))
    assert (await run(node, key, {})).json()["data"]["status"] == "succeeded"
    await publish_in_console(node, auth, app_id, fanning(4))
    too_deep = (await run(node, key, {})).json()["data"]
    assert (too_deep["status"], too_deep["error"]) == (
        "failed", "Exceeds the maximum parallel depth limit of 3.")


async def test_executors_stream_text_chunks_and_advanced_chat_answers_are_messages(
        node: Node, auth: dict[str, str], executors: Callable[[str, Executor], None]) -> None:
    async def writer(call: NodeCall) -> NodeResult:
        for piece in ("Once ", "upon ", "a time"):
            await call.emit("text_chunk", {"text": piece,
                                           "from_variable_selector": [call.node.id, "text"]})
        return NodeResult(outputs={"text": "Once upon a time"})

    executors("llm", writer)
    story = graph([graph_node("start", "start", variables=[]), graph_node("write", "llm"),
                   graph_node("say", "answer", answer="{{#write.text#}}."),
                   graph_node("end", "end", outputs=end_outputs(("story", ["write", "text"])))],
                  [edge("start", "write"), edge("write", "say"), edge("say", "end")])
    app_id, key = await workflow_app(node, auth, story)
    events = await events_of(node, key, {})
    chunks = [e for e in events if e["event"] == "text_chunk"]
    assert "".join(e["data"]["text"] for e in chunks) == "Once upon a time"
    assert chunks[0]["data"]["from_variable_selector"] == ["write", "text"]
    kinds = [e["event"] for e in events]
    assert kinds.index("text_chunk") > kinds.index("node_started") and \
        kinds.index("node_finished", kinds.index("text_chunk")) > kinds.index("text_chunk")

    # an advanced-chat run: the answer node's text is the message, tokens are not repeated
    workflow_id = await publish_in_console(node, auth, app_id, story)
    run_id, task_id, message_id, conversation_id = uuid4(), uuid4(), uuid4(), uuid4()
    record(node, app_id, run_id, started_run(
        app_id, workflow_id, run_id, task_id, mode="advanced-chat",
        conversation_id=conversation_id, message_id=message_id))
    chat_events = await stream_of(node, task_id)
    assert not any(e["event"] == "text_chunk" for e in chat_events)
    (message,) = [e for e in chat_events if e["event"] == "message"]
    validate(chat_event_schema("message"), message)
    assert (message["answer"], message["message_id"], message["conversation_id"]) == (
        "Once upon a time.", str(message_id), str(conversation_id))
    for event in chat_events:
        validate(chat_event_schema(event["event"]), event)


async def test_the_sweep_fails_runs_left_running_past_the_time_limit(node: Node) -> None:
    """Runs no engine member ended (none was up): the sweep fails those running longer than
    WORKFLOW_MAX_EXECUTION_TIME and closes their streams; paused and recent runs stay."""
    store = InMemoryEventStore()  # a log no engine follows
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    forgotten, paused, recent = uuid4(), uuid4(), uuid4()
    tasks = {run_id: uuid4() for run_id in (forgotten, paused, recent)}
    ctx = Context(tenant_id=uuid4(), actor_id=None, correlation_id=uuid4(),
                  causation_id=uuid4())
    for run_id, since in ((forgotten, hour_ago), (paused, hour_ago),
                          (recent, datetime.now(UTC))):
        run_ = WorkflowRun(run_id)
        run_.start(started_run(str(uuid4()), uuid4(), run_id, tasks[run_id]), ctx)
        if run_id == paused:
            run_.note(ev.WorkflowRunPaused(node_id="review", form_token="t", form={},
                                           expires_at=0), ctx)
        store.append([replace(e, occurred_at=since) for e in run_.pending])
    c = node.container
    sweep = partial(fail_overdue_runs, settings=c.settings, store=store, engine=c.engine,
                    read_models=c.read_models, kv=c.kv, storage=c.storage,
                    embedding_models=c.embedding_models, vectors=c.vectors,
                    keywords=c.keywords)
    await sweep()
    await sweep()  # the cursor moved on: nothing is failed twice
    ends = [(e.aggregate_id, e.payload) for e in store.read_from(0, 100)
            if isinstance(e.payload, ev.WorkflowRunFailed)]
    assert [(run_id, p.error) for run_id, p in ends] == [
        (forgotten, f"Max execution time {c.settings.WORKFLOW_MAX_EXECUTION_TIME:g}s reached.")]
    streamed = await c.kv.read(task_stream_key(tasks[forgotten]), "0", count=10, block_ms=0)
    (closing,) = [orjson.loads(entry) for _, entry in streamed]
    assert (closing["event"], closing["data"]["status"]) == ("workflow_finished", "failed")


async def test_a_retried_request_with_an_idempotency_key_joins_the_first_run(
        node: Node, auth: dict[str, str]) -> None:
    _, key = await workflow_app(node, auth, GREETING)
    headers = {**key, "Idempotency-Key": "order-17"}
    body = {"inputs": {"name": "Flo"}, "user": "ann", "response_mode": "blocking"}
    first = await node.client.post("/v1/workflows/run", headers=headers, json=body)
    again = await node.client.post("/v1/workflows/run", headers=headers, json=body)
    assert again.json() == first.json()
    other = await node.client.post("/v1/workflows/run", headers={**key, "Idempotency-Key": "x"},
                                   json=body)
    assert other.json()["workflow_run_id"] != first.json()["workflow_run_id"]
    runs = {e.aggregate_id for e in node.container.store.read_from(0, 10_000)
            if e.type == "WorkflowRunStarted"}
    assert len(runs) == 2


def test_a_replay_of_workflow_events_executes_no_node_unless_allowed(node: Node) -> None:
    """`eddy events replay` plans the engine's group as acknowledging, not acting: a replayed
    run start would otherwise call its models and URLs again."""
    groups = declared_groups(node.container)
    engine = next(g for g in groups if g.name == "workflow.runs")
    for allowed in (False, True):
        planned = dict(Replay(EventFilter(), groups, allow_side_effects=allowed).receivers(
            list(engine.topics)))
        assert planned[engine] is allowed
