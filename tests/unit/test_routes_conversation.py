"""The conversation context's routes on the in-memory node (tests/memory.py): an app's
config and site, a chat answered by the real chat processor on the memory bus through the
fake model provider (its task stream in the memory key-value store: blocking, streaming,
replay with Last-Event-ID, stop from another request), conversations and messages,
annotations and uploaded files, through the real FastAPI app. tests/e2e covers the same
context on Postgres and Redis."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.chat import Chat, app_with_key
from tests.fakes.openai_server import ScriptedChat
from tests.harness import eventually, served
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
    closed = await chat.node.client.get(f"/v1/chat-messages/{task_id}/events",
                                        headers={**chat.key, "Last-Event-ID": ids[-1]},
                                        params={"user": "ann"})
    assert [e["event"] for _, e in sse_events(closed.content)] == ["message_end"]
    never = await chat.node.client.get(f"/v1/chat-messages/{task_id}/events",
                                       headers={**chat.key, "Last-Event-ID": "1-0"},
                                       params={"user": "ann"})
    assert never.status_code == 400 and never.json()["code"] == "invalid_param"
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


async def test_stop_from_another_request_ends_the_stream(chat: Chat) -> None:
    await chat.configure()
    chat.provider.script_chat(ScriptedChat(" ".join(f"w{i}" for i in range(40)),
                                           chunk_delay=0.05))
    seen: list[dict[str, Any]] = []
    async with served(chat.node.app) as url, httpx.AsyncClient(base_url=url) as http, \
            http.stream("POST", "/v1/chat-messages", headers=chat.key, json={
                "inputs": {}, "query": "Count", "user": "ann",
                "response_mode": "streaming"}) as r:
        buffer = b""
        async for piece in r.aiter_bytes():
            buffer += piece
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                seen += [e for _, e in sse_events(block + b"\n\n")]
                if len(seen) == 2:
                    # another user's stop does nothing; the right user's stops it
                    for user in ("bob", "ann"):
                        stop = await chat.node.client.post(
                            f"/v1/chat-messages/{seen[0]['task_id']}/stop", headers=chat.key,
                            json={"user": user})
                        assert stop.json() == {"result": "success"}
    assert seen[-1]["event"] == "message_end"
    streamed = "".join(e["answer"] for e in seen if e["event"] == "message")
    assert 0 < len(streamed.split()) < 40

    async def ended() -> Any:
        found = (await chat.node.client.get("/v1/messages", headers=chat.key, params={
            "user": "ann", "conversation_id": seen[0]["conversation_id"]})).json()["data"]
        return found[0] if found and found[0]["status"] != "pending" else None

    stored = await eventually(ended, timeout=10, interval=0.05)
    assert stored["status"] == "stopped" and stored["answer"] == streamed


async def test_conversations_are_renamed_rated_and_deleted_per_user(chat: Chat) -> None:
    await chat.configure()
    answers = [(await chat.send(q)).json() for q in ("Trip plans", "Dinner ideas")]
    trip, dinner = (a["conversation_id"] for a in answers)

    renamed = await chat.node.client.post(f"/v1/conversations/{trip}/name", headers=chat.key,
                                          json={"name": "Trip", "user": "ann"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Trip"
    stolen = await chat.node.client.post(f"/v1/conversations/{trip}/name", headers=chat.key,
                                         json={"name": "x", "user": "bob"})
    assert stolen.status_code == 404

    rated = await chat.node.client.post(
        f"/v1/messages/{answers[0]['message_id']}/feedbacks", headers=chat.key,
        json={"rating": "like", "user": "ann"})
    assert rated.status_code == 200 and rated.json() == {"result": "success"}
    history = (await chat.node.client.get("/v1/messages", headers=chat.key, params={
        "user": "ann", "conversation_id": trip})).json()["data"]
    assert history[0]["feedback"] == {"rating": "like"}

    deleted = await chat.node.client.request(
        "DELETE", f"/v1/conversations/{dinner}", headers=chat.key, json={"user": "ann"})
    assert deleted.status_code == 204
    listed = (await chat.node.client.get("/v1/conversations", headers=chat.key,
                                         params={"user": "ann"})).json()["data"]
    assert [(c["id"], c["name"]) for c in listed] == [(trip, "Trip")]
    refused = await chat.send("More?", conversation_id=dinner)
    assert refused.status_code == 404


async def test_annotations_and_uploaded_files_belong_to_their_app(chat: Chat) -> None:
    c = chat.node.client
    created = await c.post("/v1/apps/annotations", headers=chat.key,
                           json={"question": "Where do I park?", "answer": "East entrance."})
    assert created.status_code == 201, created.text
    refused = await c.post("/v1/apps/annotations", headers=chat.key,
                           json={"question": "only a question"})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_param"
    found = (await c.get("/v1/apps/annotations", headers=chat.key,
                         params={"keyword": "EAST"})).json()
    assert [a["id"] for a in found["data"]] == [created.json()["id"]] and found["total"] == 1

    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    uploaded = await c.post("/v1/files/upload", headers=chat.key, data={"user": "ann"},
                            files={"file": ("pixel.png", png, "image/png")})
    assert uploaded.status_code == 201, uploaded.text
    shown = await c.get(f"/v1/files/{uploaded.json()['id']}/preview", headers=chat.key)
    assert shown.status_code == 200 and shown.content == png

    _, other = await app_with_key(chat.node, chat.auth, name="Other")
    assert (await c.get("/v1/apps/annotations", headers=other)).json()["total"] == 0
    elsewhere = await c.get(f"/v1/files/{uploaded.json()['id']}/preview", headers=other)
    assert elsewhere.status_code == 404 and elsewhere.json()["code"] == "file_not_found"
