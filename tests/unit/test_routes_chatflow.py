"""Advanced-chat (chatflow) apps through /v1/chat-messages on the in-memory node: the chat
processor leaves their messages alone, the chatflow processor starts each message's
workflow run (the conversation's sys variables, its conversation variables as the previous
run left them), the engine runs it and answers the message: the blocking answer and the
stream as Dify's spec has them, the conversation's history and its variables follow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from schemas.workflow import events as we
from schemas.workflow.naming import chat_run_id_for
from tests.chat import app_with_key, sse_events
from tests.harness import Node, eventually
from tests.spec import chat_event_schema, validate
from tests.workflows import Gate, edge, executors_on, graph, graph_node, publish
from workers.workflow.nodes.base import Executor, HumanInputRequired, NodeCall, NodeResult

TOPIC = {"id": str(uuid4()), "name": "topic", "value_type": "string", "value": "nothing yet",
         "description": "What the user last asked about"}
# says what the conversation variable holds, then sets it to the question
REMEMBERING = graph(
    [graph_node("start", "start", variables=[]),
     graph_node("say", "answer", answer="Last time: {{#conversation.topic#}}."),
     graph_node("remember", "remember")],
    [edge("start", "say"), edge("say", "remember")])


@pytest.fixture
def executors(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Executor], None]:
    return executors_on(monkeypatch)


async def remember(call: NodeCall) -> NodeResult:
    """A test's variable assigner: conversation.topic := sys.query."""
    return NodeResult(updates={"conversation": {"topic": call.pool.get(["sys", "query"])}})


async def test_a_chatflow_app_answers_through_its_runs_and_keeps_conversation_variables(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    executors("remember", remember)
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="advanced-chat", name="Tea bot")
    publish(node, app_id, REMEMBERING, conversation_variables=[TOPIC])

    async def ask(query: str, mode: str = "blocking", **body: Any) -> Any:
        return await node.client.post("/v1/chat-messages", headers=key, json={
            "inputs": {}, "query": query, "user": "ann", "response_mode": mode, **body})

    first = await ask("green tea")
    assert first.status_code == 200, first.text
    reply = first.json()
    assert (reply["answer"], reply["mode"]) == ("Last time: nothing yet.", "advanced-chat")
    conversation = reply["conversation_id"]

    second = await ask("oolong", mode="streaming", conversation_id=conversation)
    events = [e for _, e in sse_events(second.content)]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "workflow_started" and kinds[-2:] == ["workflow_finished",
                                                             "message_end"], kinds
    assert {"node_started", "node_finished", "message"} <= set(kinds)
    for event in events:
        validate(chat_event_schema(event["event"]), event)
        assert event["conversation_id"] == conversation
    assert "".join(e["answer"] for e in events if e["event"] == "message") == \
        "Last time: green tea."
    run = node.container.store.load(chat_run_id_for(UUID(events[-1]["message_id"])))
    started = run[0].payload
    assert isinstance(started, we.WorkflowRunStarted)
    assert (started.system["query"], started.system["conversation_id"],
            started.system["dialogue_count"]) == ("oolong", conversation, 2)
    assert started.conversation_variables == {"topic": "green tea"}

    async def history() -> Any:
        listed = await node.client.get("/v1/messages", headers=key, params={
            "conversation_id": conversation, "user": "ann"})
        answers = [m["answer"] for m in listed.json()["data"]]
        return answers == ["Last time: nothing yet.", "Last time: green tea."]
    await eventually(history)  # the read model follows the conversation's events
    variables = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                      headers=key, params={"user": "ann"})
    assert variables.status_code == 200, variables.text
    assert [(v["id"], v["name"], v["value"]) for v in variables.json()["data"]] == [
        (TOPIC["id"], "topic", "oolong")]
    named = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                  headers=key, params={"user": "ann", "variable_name": "x"})
    assert named.json()["data"] == []
    others = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                   headers=key, params={"user": "bob"})
    assert others.status_code == 404


async def test_a_conversation_variable_set_through_the_api_is_what_the_next_turn_starts_from(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    executors("remember", remember)
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="advanced-chat", name="Tea bot")
    publish(node, app_id, REMEMBERING, conversation_variables=[TOPIC])

    async def ask(query: str, **body: Any) -> Any:
        return await node.client.post("/v1/chat-messages", headers=key, json={
            "inputs": {}, "query": query, "user": "ann", "response_mode": "blocking", **body})

    conversation = (await ask("green tea")).json()["conversation_id"]
    url = f"/v1/conversations/{conversation}/variables/{TOPIC['id']}"

    async def put(value: Any, user: str = "ann", variable: str = url) -> Any:
        return await node.client.put(variable, headers=key, json={"value": value, "user": user})

    async def visible() -> bool:  # the read model follows the conversation's events
        listed = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                       headers=key, params={"user": "ann"})
        return listed.status_code == 200 and bool(listed.json()["data"])
    await eventually(visible)
    mismatch = await put(42)
    assert (mismatch.status_code, mismatch.json()["message"]) == (
        400, "Type mismatch: variable 'topic' expects string, but got number type")
    assert (await put("x", variable=url.rsplit("/", 1)[0] + f"/{uuid4()}")).status_code == 404
    assert (await put("x", user="bob")).status_code == 404  # another user's conversation
    changed = await put("matcha")
    assert changed.status_code == 200, changed.text
    item = changed.json()
    assert (item["id"], item["name"], item["value"]) == (
        TOPIC["id"], "topic", "matcha")
    listed = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                   headers=key, params={"user": "ann"})
    assert [v["value"] for v in listed.json()["data"]] == ["matcha"]
    second = await ask("oolong", conversation_id=conversation)
    assert second.json()["answer"] == "Last time: matcha."


async def test_a_chatflow_message_paused_for_human_input_is_stopped_at_once(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    """Nothing holds a paused run: the message's stop ends its run and the message."""
    async def ask_human(call: NodeCall) -> NodeResult:
        raise HumanInputRequired({
            "node_id": "check", "node_title": "Check", "form_content": "Go on?", "inputs": [],
            "user_actions": [{"id": "go", "title": "Go", "button_style": "primary"}],
            "resolved_default_values": {}, "options": {}}, timeout_seconds=3600)

    executors("human-input", ask_human)
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="advanced-chat", name="Careful bot")
    publish(node, app_id, graph(
        [graph_node("start", "start", variables=[]), graph_node("check", "human-input"),
         graph_node("say", "answer", answer="done")],
        [edge("start", "check"), edge("check", "say", "go")]))
    asked = await node.client.post("/v1/chat-messages", headers=key, json={
        "inputs": {}, "query": "hi", "user": "ann", "response_mode": "streaming"})
    events = [e for _, e in sse_events(asked.content)]
    assert events[-1]["event"] == "workflow_paused", [e["event"] for e in events]
    blocking = await node.client.post("/v1/chat-messages", headers=key, json={
        "inputs": {}, "query": "hi", "user": "ann", "response_mode": "blocking"})
    # waiting for its form: accepted, with where to follow it once answered
    assert blocking.status_code == 202, blocking.text
    assert blocking.json()["events_url"].startswith(
        f"/v1/chat-messages/{blocking.json()['task_id']}/events")
    task_id, message_id = events[0]["task_id"], UUID(events[0]["message_id"])
    run_id = chat_run_id_for(message_id)

    stop = await node.client.post(f"/v1/chat-messages/{task_id}/stop", headers=key,
                                  json={"user": "ann"})
    assert stop.json() == {"result": "success"}
    assert node.container.store.load(run_id)[-1].type == "WorkflowRunStopped"

    async def message_stopped() -> bool:
        listed = await node.client.get("/v1/messages", headers=key, params={
            "conversation_id": events[0]["conversation_id"], "user": "ann"})
        return [m["status"] for m in listed.json()["data"]] == ["stopped"]
    await eventually(message_stopped)


async def test_a_chatflow_app_with_no_published_workflow_fails_the_message(
        node: Node) -> None:
    auth = await node.setup_and_login()
    _, key = await app_with_key(node, auth, mode="advanced-chat", name="Unpublished")
    answer = await node.client.post("/v1/chat-messages", headers=key, json={
        "inputs": {}, "query": "hello", "user": "ann", "response_mode": "blocking"})
    assert (answer.status_code, answer.json()["code"]) == (400, "app_unavailable")


async def test_a_chatflow_message_is_stopped_from_another_request(
        node: Node, executors: Callable[[str, Executor], None]) -> None:
    gate = Gate()
    executors("slow", gate)
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="advanced-chat", name="Slow bot")
    publish(node, app_id, graph(
        [graph_node("start", "start", variables=[]), graph_node("think", "slow"),
         graph_node("say", "answer", answer="{{#think.result#}}")],
        [edge("start", "think"), edge("think", "say")]))
    asked = asyncio.create_task(node.client.post("/v1/chat-messages", headers=key, json={
        "inputs": {}, "query": "take your time", "user": "ann",
        "response_mode": "streaming"}))
    await asyncio.wait_for(gate.entered.wait(), 20)
    task_id = gate.calls[0].run.task_id
    stopped = await node.client.post(f"/v1/chat-messages/{task_id}/stop", headers=key,
                                     json={"user": "ann"})
    assert stopped.json() == {"result": "success"}
    events = [e for _, e in sse_events((await asyncio.wait_for(asked, 20)).content)]
    assert [e["event"] for e in events][-2:] == ["workflow_finished", "message_end"]
    assert events[-2]["data"]["status"] == "stopped"
    assert not any(e["event"] == "message" for e in events)  # the answer never came


async def test_a_chatflow_message_is_checked_against_the_start_nodes_inputs(
        node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="advanced-chat", name="Greeter")
    publish(node, app_id, graph(
        [graph_node("start", "start", variables=[
            {"variable": "name", "label": "name", "type": "text-input", "required": True}]),
         graph_node("say", "answer", answer="Hello {{#start.name#}}: {{#sys.query#}}")],
        [edge("start", "say")]))
    refused = await node.client.post("/v1/chat-messages", headers=key, json={
        "inputs": {}, "query": "hi", "user": "ann", "response_mode": "blocking"})
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_param")
    listed = await node.client.get("/v1/conversations", headers=key, params={"user": "ann"})
    assert listed.json()["data"] == []  # nothing was recorded
    answered = await node.client.post("/v1/chat-messages", headers=key, json={
        "inputs": {"name": "Ann"}, "query": "hi", "user": "ann", "response_mode": "blocking"})
    assert answered.json()["answer"] == "Hello Ann: hi"
