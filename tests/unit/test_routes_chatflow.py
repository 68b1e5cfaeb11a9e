"""Advanced-chat (chatflow) apps through /v1/chat-messages on the in-memory node: the chat
processor leaves their messages alone, the chatflow processor starts each message's
workflow run (the conversation's sys variables, its conversation variables as the previous
run left them), and the run's end (here recorded as the engine records it) answers the
message: the blocking answer, the conversation's history and its variables follow."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import PublishedWorkflow, WorkflowRun, WorkflowVersion
from events.envelope import Envelope
from schemas.conversation.naming import task_owner, task_stop_key, task_stream_key
from schemas.workflow import events as we
from schemas.workflow.naming import chat_run_id_for, published_workflow_id_for
from tests.chat import app_with_key
from tests.harness import Node, eventually
from workers.conversation.task_stream import TaskStream
from workers.workflow.chatflow import finish_chat_message

TOPIC = {"id": str(uuid4()), "name": "topic", "value_type": "string", "value": "none",
         "description": "What the user talks about"}
GRAPH = {"nodes": [{"id": "start", "data": {"type": "start", "title": "Start"}}], "edges": []}


def ctx() -> Context:
    cause = uuid4()
    return Context(tenant_id=None, actor_id=None, correlation_id=cause, causation_id=cause)


def publish(node: Node, app_id: UUID) -> None:
    """A published version with one conversation variable, as publishing records it."""
    workflow_id, c = uuid4(), ctx()
    uow = UnitOfWork(node.container.store, c)
    uow.get(WorkflowVersion, workflow_id).create(we.WorkflowVersionCreated(
        app_id=app_id, kind="workflow", version="2026-12-05 04:40:00", graph=GRAPH,
        features={}, environment_variables=[], conversation_variables=[TOPIC],
        created_by=None), c)
    uow.get(PublishedWorkflow, published_workflow_id_for(app_id)).publish(
        we.WorkflowPublished(app_id=app_id, workflow_id=workflow_id, published_by=None), c)
    uow.commit()


async def started_run(node: Node) -> Envelope[we.WorkflowRunStarted]:
    """The next chat run the chatflow processor starts (one not answered yet)."""
    async def find() -> Any:
        for event in node.container.store.read_from(0, 100_000):
            if isinstance(event.payload, we.WorkflowRunStarted) and len(
                    node.container.store.load(event.aggregate_id)) == 1:
                return event
        return None
    return await eventually(find)  # type: ignore[no-any-return]


async def answer_as_the_engine(node: Node, answer: str, topic: str) -> dict[str, Any]:
    """What the engine does for a chat run: a node writing the conversation variable, the
    answer streamed, the run's end recorded, the message's end recorded and streamed."""
    started = await started_run(node)
    p, c = started.payload, ctx()
    uow = UnitOfWork(node.container.store, c)
    run = uow.get(WorkflowRun, started.aggregate_id)
    execution = uuid4()
    run.note(we.WorkflowNodeStarted(node_id="start", node_type="start", title="Start",
                                    execution_id=execution, index=1), c)
    run.note(we.WorkflowNodeSucceeded(node_id="start", execution_id=execution,
                                      updates={"conversation": {"topic": topic}}), c)
    ended = we.WorkflowRunSucceeded(outputs={"answer": answer}, answer=answer,
                                    elapsed_time=0.5, total_tokens=7, total_steps=1)
    run.note(ended, c)
    uow.commit()
    assert p.end_user_id is not None and p.conversation_id is not None
    stream = TaskStream(node.container.kv, task_stream_key(p.task_id),
                        task_stop_key(p.task_id), task_owner(p.app_id, p.end_user_id),
                        3600, 1)
    await stream.claim()
    fields = {"task_id": str(p.task_id), "id": str(p.message_id),
              "message_id": str(p.message_id), "conversation_id": str(p.conversation_id),
              "created_at": 0}
    closing = finish_chat_message(node.container.store, started, ended, c)
    await stream.publish_many([{"event": "message", **fields, "answer": answer}, closing])
    # a redelivered end records nothing again, and closes the stream the same way
    before = len(node.container.store.load(p.conversation_id))
    assert finish_chat_message(node.container.store, started, ended, c) == closing
    assert len(node.container.store.load(p.conversation_id)) == before
    return {"system": p.system, "variables": p.conversation_variables}


async def test_a_chatflow_app_answers_through_its_runs_and_keeps_conversation_variables(
        node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="advanced-chat", name="Tea bot")
    publish(node, UUID(app_id))

    async def ask(query: str, **body: Any) -> Any:
        return await node.client.post("/v1/chat-messages", headers=key, json={
            "inputs": {}, "query": query, "user": "ann", "response_mode": "blocking", **body})

    first, engine = await asyncio.gather(ask("I like green tea"),
                                         answer_as_the_engine(node, "Green it is.", "tea"))
    assert first.status_code == 200, first.text
    reply = first.json()
    assert (reply["answer"], reply["mode"]) == ("Green it is.", "advanced-chat")
    assert reply["metadata"]["usage"]["total_tokens"] == 7
    conversation = reply["conversation_id"]
    assert engine["system"]["query"] == "I like green tea"
    assert engine["system"]["conversation_id"] == conversation
    assert engine["system"]["dialogue_count"] == 1
    assert engine["variables"] == {"topic": "none"}  # the definition's default

    second, engine = await asyncio.gather(
        ask("What else?", conversation_id=conversation),
        answer_as_the_engine(node, "Oolong.", "more tea"))
    assert second.json()["answer"] == "Oolong."
    assert engine["system"]["dialogue_count"] == 2
    assert engine["variables"] == {"topic": "tea"}  # as the first turn's run left it
    run_id = chat_run_id_for(UUID(second.json()["message_id"]))
    assert len(node.container.store.load(run_id)) == 4

    async def history() -> Any:
        listed = await node.client.get("/v1/messages", headers=key, params={
            "conversation_id": conversation, "user": "ann"})
        answers = [m["answer"] for m in listed.json()["data"]]
        return answers if answers == ["Green it is.", "Oolong."] else None
    await eventually(history)
    variables = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                      headers=key, params={"user": "ann"})
    assert variables.status_code == 200, variables.text
    assert [(v["id"], v["name"], v["value"]) for v in variables.json()["data"]] == [
        (TOPIC["id"], "topic", "more tea")]
    named = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                  headers=key, params={"user": "ann", "variable_name": "x"})
    assert named.json()["data"] == []
    others = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                   headers=key, params={"user": "bob"})
    assert others.status_code == 404


async def test_a_chatflow_app_with_no_published_workflow_fails_the_message(
        node: Node) -> None:
    auth = await node.setup_and_login()
    _, key = await app_with_key(node, auth, mode="advanced-chat", name="Unpublished")
    answer = await node.client.post("/v1/chat-messages", headers=key, json={
        "inputs": {}, "query": "hello", "user": "ann", "response_mode": "blocking"})
    assert (answer.status_code, answer.json()["code"]) == (400, "app_unavailable")
