"""The conversation context's routes on the in-memory node (tests/memory.py): an app's
config and site, a chat answered by the real chat processor on the memory bus through the
fake model provider (its task stream in the memory key-value store: blocking, streaming,
replay with Last-Event-ID), conversations and messages, through the real FastAPI app.
tests/e2e covers the same context on Postgres and Redis."""

from __future__ import annotations

from typing import Any

import orjson

from tests.chat import Chat
from tests.fakes.openai_server import ScriptedChat
from tests.spec import validate


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(id, event) per SSE block, pings left out."""
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines["id"], orjson.loads(lines["data"])))
    return out


async def test_model_config_and_site_drive_parameters_and_site(chat: Chat) -> None:
    node, auth = chat.node, chat.auth
    before = (await node.client.get("/v1/parameters", headers=chat.key)).json()
    assert before["opening_statement"] == "" and before["user_input_form"] == []
    await chat.configure(opening_statement="Ask me about the city.",
                         suggested_questions=["What is there to see?"])
    params = await node.client.get("/v1/parameters", headers=chat.key)
    validate("AppParametersResponse", params.json())
    assert params.json()["opening_statement"] == "Ask me about the city."
    assert params.json()["suggested_questions"] == ["What is there to see?"]
    config = (await node.client.get(f"/console/api/apps/{chat.app_id}/model-config",
                                    headers=auth)).json()
    assert config["opening_statement"] == "Ask me about the city."

    saved = await node.client.post(f"/console/api/apps/{chat.app_id}/site", headers=auth,
                                   json={"title": "City guide", "description": "Ask away"})
    assert saved.status_code == 200, saved.text
    site = (await node.client.get("/v1/site", headers=chat.key)).json()
    assert (site["title"], site["description"]) == ("City guide", "Ask away")

    refused = await node.client.post(f"/console/api/apps/{chat.app_id}/model-config",
                                     headers=auth, json={"model": {"provider": ""}})
    assert refused.status_code == 400, refused.text
    assert (await node.client.get("/v1/parameters", headers=chat.key)).json() == params.json()


async def test_chat_blocking_then_streaming_remembers_the_conversation(chat: Chat) -> None:
    await chat.configure(pre_prompt="You are a tour guide.")
    first = await chat.send("Where is the old town?")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["answer"] == "Echo: Where is the old town?" and body["mode"] == "chat"

    chat.provider.script_chat(ScriptedChat("It opens at nine.",
                                           chunks=["It ", "opens ", "at nine."]))
    second = await chat.send("When does it open?", mode="streaming",
                             conversation_id=body["conversation_id"])
    assert second.status_code == 200
    events = [e for _, e in sse_events(second.content)]
    assert [e["event"] for e in events] == ["message"] * 3 + ["message_end"]
    assert "".join(e["answer"] for e in events[:-1]) == "It opens at nine."
    sent = chat.provider.chat_requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]

    # the task's events again, after any of its ids: the rest, no gaps or repeats
    task_id = events[0]["task_id"]
    replay = await chat.node.client.get(f"/v1/chat-messages/{task_id}/events", headers=chat.key,
                                        params={"user": "ann"})
    ids = [i for i, _ in sse_events(replay.content)]
    assert len(ids) == 4 and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    rest = await chat.node.client.get(f"/v1/chat-messages/{task_id}/events",
                                      headers={**chat.key, "Last-Event-ID": ids[1]},
                                      params={"user": "ann"})
    assert [i for i, _ in sse_events(rest.content)] == ids[2:]
    others = await chat.node.client.get(f"/v1/chat-messages/{task_id}/events",
                                        headers=chat.key, params={"user": "bob"})
    assert others.status_code == 404

    listed = (await chat.node.client.get("/v1/conversations", headers=chat.key,
                                         params={"user": "ann"})).json()
    assert [c["id"] for c in listed["data"]] == [body["conversation_id"]]
    history = (await chat.node.client.get("/v1/messages", headers=chat.key, params={
        "user": "ann", "conversation_id": body["conversation_id"]})).json()
    assert [m["answer"] for m in history["data"]] == ["Echo: Where is the old town?",
                                                      "It opens at nine."]
