"""More answers at once than the gateway or the Redis pools take: refused at the door with
503 + Retry-After before anything is recorded, or waited for; never an empty 200, never a
message answered twice because a pool ran dry."""

from __future__ import annotations

import asyncio

import pytest

from tests.chat import Chat
from tests.e2e.test_messages import sse_events
from tests.fakes.openai_server import ScriptedChat
from tests.harness import eventually


@pytest.mark.settings(CHAT_MAX_OPEN_STREAMS=3)
async def test_past_the_open_stream_limit_a_message_is_refused_unrecorded(chat: Chat) -> None:
    await chat.configure()
    slow = ScriptedChat("a b c", chunks=["a ", "b ", "c"], chunk_delay=1.0)
    chat.provider.script_chat(slow, slow, slow)
    streams = [asyncio.create_task(chat.send(f"q{i}", mode="streaming")) for i in range(3)]

    async def three_asked() -> bool:
        return len(chat.provider.chat_requests) == 3

    await eventually(three_asked, timeout=30)
    refused = await chat.send("one too many", mode="streaming")
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "service_unavailable"
    assert refused.headers["Retry-After"]
    for done in await asyncio.gather(*streams):
        events = [e for _, e in sse_events(done.content) if e]
        assert events[-1]["event"] == "message_end"
    assert len(chat.provider.chat_requests) == 3  # the refused one never reached the model
    conversations = await chat.node.client.get("/v1/conversations", headers=chat.key,
                                               params={"user": "ann", "limit": 100})
    assert len(conversations.json()["data"]) == 3
    # slots come back when streams end: the next message is taken
    assert (await chat.send("now there is room")).status_code == 200


async def test_more_answers_at_once_than_redis_py_pools_are_each_answered_once(
        chat: Chat) -> None:
    # redis-py pools 100 connections unless told otherwise; each streamed answer holds one
    await chat.configure()
    count = 150
    chat.provider.script_chat(*[ScriptedChat(f"answer {i}", chunks=[f"answer {i}"],
                                             chunk_delay=0.3) for i in range(count)])
    answers = await asyncio.gather(*[
        chat.send(f"question {i}", mode="streaming" if i % 2 else "blocking")
        for i in range(count)])
    for answer in answers:
        assert answer.status_code == 200, answer.text
        if answer.headers["content-type"].startswith("text/event-stream"):
            events = [e for _, e in sse_events(answer.content) if e]
            assert events and events[0]["task_id"] and events[-1]["event"] == "message_end"
    assert len(chat.provider.chat_requests) == count  # no answer was asked for twice
