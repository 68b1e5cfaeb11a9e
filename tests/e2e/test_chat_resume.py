"""Following a chat answer from elsewhere: Last-Event-ID at the edges of the task's stream,
and an Idempotency-Key that makes a retried (or repeated, or concurrent) request join the
first one's task instead of asking the model again."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.chat import Chat, app_with_key
from tests.e2e.test_messages import check_chat_events, sse_events
from tests.fakes.openai_server import ScriptedChat
from tests.harness import served


def _events(response: httpx.Response) -> list[tuple[str | None, dict[str, Any]]]:
    return [(i, e) for i, e in sse_events(response.content) if e is not None]


async def _answered(chat: Chat) -> tuple[str, list[tuple[str | None, dict[str, Any]]]]:
    await chat.configure()
    chat.provider.script_chat(ScriptedChat("one two three", chunks=["one ", "two ", "three"]))
    sent = await chat.send("Count", mode="streaming")
    events = _events(sent)
    assert events[-1][1]["event"] == "message_end"
    return events[0][1]["task_id"], events


async def _resume(chat: Chat, task_id: str, last_event_id: str) -> httpx.Response:
    # a bounded wait: a stream that never ends fails the test instead of hanging it
    return await asyncio.wait_for(chat.node.client.get(
        f"/v1/chat-messages/{task_id}/events", params={"user": "ann"},
        headers={**chat.key, "Last-Event-ID": last_event_id}), timeout=15)


async def test_last_event_id_at_or_after_the_close_sends_the_close_again(chat: Chat) -> None:
    task_id, events = await _answered(chat)
    close_id, close = events[-1]
    assert close_id is not None
    millis, sequence = map(int, close_id.split("-"))
    for at_or_after in (close_id, f"{millis}-{sequence + 1}", f"{millis + 60_000}-0"):
        again = await _resume(chat, task_id, at_or_after)
        assert again.status_code == 200, again.text
        assert _events(again) == [(close_id, close)]
    # one before the close: just the close, too (no gap, no repeat)
    before = await _resume(chat, task_id, str(events[-2][0]))
    assert _events(before) == [(close_id, close)]


async def test_an_id_this_stream_never_gave_is_a_400_before_streaming(chat: Chat) -> None:
    task_id, events = await _answered(chat)
    first_id = str(events[0][0])
    millis = int(first_id.split("-")[0])
    for bad in (f"{2**64}-0", f"1-{2**64}", "abc", "12-x", f"{millis - 1}-7"):
        refused = await _resume(chat, task_id, bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.headers["content-type"] == "application/json"
        assert refused.json()["code"] == "invalid_param"


async def test_an_id_beyond_an_open_stream_is_a_400(chat: Chat) -> None:
    await chat.configure()
    chat.provider.script_chat(ScriptedChat("slow words here", chunks=["slow ", "words ", "here"],
                                           chunk_delay=1.0))
    async with served(chat.node.app) as url, httpx.AsyncClient(base_url=url) as http, \
            http.stream("POST", "/v1/chat-messages", headers=chat.key, json={
                "inputs": {}, "query": "Slowly", "user": "ann",
                "response_mode": "streaming"}) as r:
        buffer = b""
        async for piece in r.aiter_bytes():
            buffer += piece
            if b"\n\n" in buffer:
                break
        first_id, first = _events(httpx.Response(200, content=buffer))[0]
        millis = int(str(first_id).split("-")[0])
        refused = await _resume(chat, first["task_id"], f"{millis + 60_000}-0")
        assert refused.status_code == 400, refused.text
        # the answer is still going: a valid id resumes it
        rest = await _resume(chat, first["task_id"], str(first_id))
        assert _events(rest)[-1][1]["event"] == "message_end"


async def test_an_idempotency_key_makes_retries_join_the_first_request(chat: Chat) -> None:
    await chat.configure()
    chat.provider.script_chat(ScriptedChat("Only once.", chunks=["Only ", "once."],
                                           chunk_delay=0.2))
    retry_key = {**chat.key, "Idempotency-Key": "order-42"}
    body = {"inputs": {}, "query": "Say it", "user": "ann", "response_mode": "blocking"}
    answers = await asyncio.gather(*[
        chat.node.client.post("/v1/chat-messages", headers=retry_key, json=body)
        for _ in range(12)])
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["message_id"] for a in answers}) == 1
    assert {a.json()["answer"] for a in answers} == {"Only once."}
    assert len(chat.provider.chat_requests) == 1  # the model was asked once
    conversation = answers[0].json()["conversation_id"]
    history = await chat.node.client.get("/v1/messages", headers=chat.key, params={
        "user": "ann", "conversation_id": conversation})
    assert len(history.json()["data"]) == 1

    # streaming under the same key replays the same task's events
    streamed = await chat.node.client.post("/v1/chat-messages", headers=retry_key,
                                           json={**body, "response_mode": "streaming"})
    events = [e for _, e in _events(streamed)]
    check_chat_events(events)
    assert {e["message_id"] for e in events} == {answers[0].json()["message_id"]}
    assert len(chat.provider.chat_requests) == 1

    # the key with another question is a conflict; another user's or app's key is theirs
    other = await chat.node.client.post("/v1/chat-messages", headers=retry_key,
                                        json={**body, "query": "Something else"})
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    chat.provider.script_chat("For bob.")
    bobs = await chat.node.client.post("/v1/chat-messages", headers=retry_key,
                                       json={**body, "user": "bob"})
    assert bobs.status_code == 200 and bobs.json()["answer"] == "For bob."
    _, other_app_key = await app_with_key(chat.node, chat.auth, name="Second guide")
    chat.provider.script_chat("Second app.")
    theirs = await chat.node.client.post(
        "/v1/chat-messages", headers={**other_app_key, "Idempotency-Key": "order-42"},
        json=body)
    assert theirs.status_code == 200 and theirs.json()["answer"] == "Second app."
    assert len(chat.provider.chat_requests) == 3
