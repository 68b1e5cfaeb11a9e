"""Human input and chatflow apps over real HTTP on Postgres and Redis, run by the engine:
a workflow pauses at a human-input node holding no worker, its form is shown and answered
through the Service API (and then refused a second time), and the run resumes on the branch
of the action chosen; a form left past its expiry ends on the `timeout` branch. An
advanced-chat app answers two turns through /v1/chat-messages, its conversation variable
carried from the first turn's run to the second's, with Dify's official SDK unmodified."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

from dify_client import ChatClient

from adapters.embedded.postgres import EmbeddedPostgres
from commands.executor import execute
from schemas.base import CommandEnvelope
from schemas.workflow import commands as wc
from schemas.workflow import events as we
from tests.chat import Chat, app_with_key, sse_events
from tests.harness import Node, eventually, node_settings, running_node, served
from tests.spec import chat_event_schema, validate
from tests.workflows import (
    check_workflow_events,
    edge,
    end_outputs,
    graph,
    graph_node,
    publish_in_console,
)

REVIEW = graph_node("review", "human-input", "Review",
              form_content="Publish {{#start.topic#}}? {{#$outputs.note#}}",
              inputs=[{"type": "paragraph", "output_variable_name": "note",
                       "default": {"type": "constant", "value": "looks fine"}}],
              user_actions=[{"id": "approve", "title": "Approve", "button_style": "primary"},
                            {"id": "reject", "title": "Reject"}],
              timeout=1, timeout_unit="hour")
ACTION = end_outputs(("action", ["review", "action_id"]))
REVIEWED = graph(
    [graph_node("start", "start", "Start", variables=[
        {"variable": "topic", "label": "topic", "type": "text-input", "required": True}]),
     REVIEW,
     graph_node("published", "end", "Published", outputs=end_outputs(
         ("note", ["review", "note"]), ("action", ["review", "action_id"]))),
     graph_node("dropped", "end", "Dropped", outputs=ACTION),
     graph_node("late", "end", "Late", outputs=ACTION)],
    [edge("start", "review"), edge("review", "published", "approve"),
     edge("review", "dropped", "reject"), edge("review", "late", "timeout")])


async def paused_run(node_: Node, key: dict[str, str]) -> tuple[UUID, dict[str, Any]]:
    """A run started streaming, up to its pause: (run id, the human_input_required data)."""
    started = await node_.client.post("/v1/workflows/run", headers=key, json={
        "inputs": {"topic": "the spring issue"}, "response_mode": "streaming", "user": "ann"})
    assert started.status_code == 200, started.text
    events = [e for _, e in sse_events(started.content)]
    check_workflow_events(events)
    kinds = [e["event"] for e in events]
    assert kinds[-2:] == ["human_input_required", "workflow_paused"], kinds
    return UUID(events[0]["workflow_run_id"]), events[-2]["data"]


async def run_ended(node_: Node, run_id: UUID) -> we.WorkflowRunSucceeded:
    async def ended() -> Any:
        history = await asyncio.to_thread(node_.container.store.load, run_id)
        return history[-1].payload if isinstance(
            history[-1].payload, we.WorkflowRunSucceeded | we.WorkflowRunFailed) else None
    end = await eventually(ended)
    assert isinstance(end, we.WorkflowRunSucceeded), end
    return end


async def test_a_run_paused_at_human_input_holds_no_worker_and_resumes_on_submit(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
        redis_url: str) -> None:
    settings = node_settings(postgres, fresh_database("e2e"), redis_url)
    async with running_node(settings) as first:
        auth = await first.setup_and_login()
        app_id, key = await app_with_key(first, auth, mode="workflow", name="Review flow")
        await publish_in_console(first, auth, app_id, REVIEWED)
        run_id, required = await paused_run(first, key)

        async def idle() -> bool:
            state = await first.container.bus.group_state("workflow.runs", ["workflow.runs"])
            return state.oldest_unacked is None
        await eventually(idle)  # the engine let the run's message go: nothing holds the run
    form_url = f"/v1/form/human_input/{required['form_token']}"

    # The member that paused the run is gone; another one shows the form and resumes it.
    async with running_node(settings, migrate_first=False) as second:
        shown = await second.client.get(form_url, headers=key)
        assert shown.status_code == 200, shown.text
        assert shown.json()["form_content"] == "Publish the spring issue? {{#$outputs.note#}}"
        assert shown.json()["resolved_default_values"] == {"note": "looks fine"}
        refused = await second.client.post(form_url, headers=key, json={
            "inputs": {"note": "ok"}, "action": "merge", "user": "bob"})
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_form_data")

        submitted = await second.client.post(form_url, headers=key, json={
            "inputs": {"note": "ship it"}, "action": "approve", "user": "bob"})
        assert (submitted.status_code, submitted.json()) == (200, {})
        end = await run_ended(second, run_id)
        assert end.outputs == {"note": "ship it", "action": "approve"}
        again = await second.client.post(form_url, headers=key, json={
            "inputs": {"note": "no"}, "action": "reject", "user": "carl"})
        assert (again.status_code, again.json()["code"]) == (412, "human_input_form_submitted")


async def test_a_form_past_its_expiry_ends_on_the_timeout_branch(chat: Chat) -> None:
    node_ = chat.node
    app_id, key = await app_with_key(node_, chat.auth, mode="workflow", name="Review flow")
    await publish_in_console(node_, chat.auth, app_id, REVIEWED)
    run_id, required = await paused_run(node_, key)
    # What the form timeout job sends once the form's minute passed (the job itself is
    # tested in the unit tier): here as of just past the form's expiry, an hour from now.
    command = wc.TimeOutHumanInput(run_id=run_id, form_token=required["form_token"],
                                   now=float(required["expiration_time"] + 1))
    outcome = await asyncio.to_thread(
        execute, node_.container.store, node_.container.handlers, CommandEnvelope.of(
            command, aggregate_id=run_id, tenant_id=None, actor_id=None,
            correlation_id=uuid4()))
    assert outcome.result["timed_out"] is True
    end = await run_ended(node_, run_id)
    assert end.outputs == {"action": "timeout"}
    late = await node_.client.post(f"/v1/form/human_input/{required['form_token']}",
                                   headers=key, json={"inputs": {"note": "late"},
                                                      "action": "approve", "user": "bob"})
    assert (late.status_code, late.json()["code"]) == (412, "human_input_form_expired")


TOPIC = {"id": str(uuid4()), "name": "topic", "value_type": "string", "value": "nothing yet",
         "description": "What the user last asked about"}
REMEMBERING = graph(
    [graph_node("start", "start", "Start", variables=[]),
     graph_node("say", "answer", "Say", answer="Last time: {{#conversation.topic#}}."),
     graph_node("remember", "assigner", "Remember", version="1", write_mode="over-write",
                assigned_variable_selector=["conversation", "topic"],
                input_variable_selector=["sys", "query"])],
    [edge("start", "say"), edge("say", "remember")])


def stream_events(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line[len(b"data: "):]) for line in response.iter_lines()
            if line.startswith(b"data: ")]


async def test_a_chatflow_app_answers_two_turns_carrying_its_conversation_variable(
        chat: Chat) -> None:
    node_ = chat.node
    app_id, key = await app_with_key(node_, chat.auth, mode="advanced-chat", name="Tea bot")
    await publish_in_console(node_, chat.auth, app_id, REMEMBERING,
                             conversation_variables=[TOPIC])
    async with served(node_.app) as url:
        client = ChatClient(key["Authorization"].removeprefix("Bearer "))
        client.base_url = f"{url}/v1"
        first = await asyncio.to_thread(client.create_chat_message, {}, "green tea", "ann")
        assert first.status_code == 200, first.text
        validate("ChatCompletionResponse", first.json())
        assert (first.json()["answer"], first.json()["mode"]) == (
            "Last time: nothing yet.", "advanced-chat")
        conversation = first.json()["conversation_id"]

        second = await asyncio.to_thread(
            client.create_chat_message, {}, "oolong", "ann", response_mode="streaming",
            conversation_id=conversation)
        events = await asyncio.to_thread(stream_events, second)
        kinds = [e["event"] for e in events]
        assert kinds[0] == "workflow_started" and kinds[-2:] == ["workflow_finished",
                                                                 "message_end"], kinds
        assert {"node_started", "node_finished", "message"} <= set(kinds)
        for event in events:
            validate(chat_event_schema(event["event"]), event)
        assert "".join(e["answer"] for e in events if e["event"] == "message") == \
            "Last time: green tea."

        async def history() -> Any:
            r = await asyncio.to_thread(client.get_conversation_messages, "ann", conversation)
            answers = [m["answer"] for m in r.json()["data"]]
            return answers == ["Last time: nothing yet.", "Last time: green tea."]
        await eventually(history)  # the read model follows the conversation's events
    variables = await node_.client.get(f"/v1/conversations/{conversation}/variables",
                                       headers=key, params={"user": "ann"})
    assert [(v["name"], v["value"]) for v in variables.json()["data"]] == [("topic", "oolong")]
