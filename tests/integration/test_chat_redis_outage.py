"""Redis (Valkey) stops in the middle of chat answers. Accepted work is never "retry": a
streaming client's answer goes on after a short outage with every token once; past
TASK_STREAM_OUTAGE_SECONDS the stream ends with an `error` event naming how to resume and
a blocking client gets 202 with the task and an events URL its app key can read. Either
way the model is asked once and the answer is stored once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
from tests.chat import (
    Chat,
    SseEvent,
    chat_node,
    live_answer,
    sse_events,
)
from tests.fakes.openai_server import ScriptedChat
from tests.harness import eventually, node_settings

WORDS = [f"w{i} " for i in range(24)]


@pytest.fixture
async def chat(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
               own_redis: EmbeddedRedis) -> AsyncIterator[Chat]:
    settings = node_settings(postgres, fresh_database("outage"), own_redis.url,
                             TASK_STREAM_OUTAGE_SECONDS=2)
    async with chat_node(settings) as chat:
        yield chat


async def _stored_answers(chat: Chat, conversation_id: str) -> list[dict[str, Any]]:
    r = await chat.node.client.get("/v1/messages", headers=chat.key, params={
        "user": "ann", "conversation_id": conversation_id})
    data = r.json().get("data", []) if r.status_code == 200 else []
    return data if data and data[-1]["answer"] else []


async def _outage(redis: EmbeddedRedis, seconds: float) -> None:
    await asyncio.to_thread(redis.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(redis.start)


async def test_a_short_outage_mid_answer_loses_and_repeats_nothing(
        chat: Chat, own_redis: EmbeddedRedis) -> None:
    chat.provider.script_chat(ScriptedChat("".join(WORDS), chunks=WORDS, chunk_delay=0.15))
    events: list[dict[str, Any]] = []
    async with live_answer(chat, "Count", timeout=60) as arriving:
        outage: asyncio.Task[None] | None = None
        async for _, event in arriving:
            events.append(event)
            if outage is None and len(events) >= 3:
                outage = asyncio.create_task(_outage(own_redis, 1.0))
        assert outage is not None
        await outage
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "message_end", kinds
    assert "".join(e["answer"] for e in events if e["event"] == "message") == "".join(WORDS)
    assert "message_replace" not in kinds
    assert len(chat.provider.chat_requests) == 1  # the model was not asked again
    stored = await eventually(lambda: _stored_answers(chat, events[0]["conversation_id"]),
                              timeout=30)
    assert len(stored) == 1 and stored[0]["answer"] == "".join(WORDS)


async def test_a_long_outage_gives_blocking_clients_the_task_to_follow(
        chat: Chat, own_redis: EmbeddedRedis) -> None:
    chat.provider.script_chat(ScriptedChat("".join(WORDS), chunks=WORDS, chunk_delay=0.2))

    async def stop_when_asked() -> None:
        async def asked() -> bool:
            return bool(chat.provider.chat_requests)

        await eventually(asked, timeout=20, interval=0.05)
        await asyncio.to_thread(own_redis.stop)

    stopping = asyncio.create_task(stop_when_asked())
    answer = await asyncio.wait_for(chat.send("Count"), timeout=60)
    await stopping
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["result"] == "accepted" and body["task_id"] and body["conversation_id"]
    assert body["events_url"] == f"/v1/chat-messages/{body['task_id']}/events?user=ann"
    await asyncio.to_thread(own_redis.start)

    # the app key follows its task: the whole answer, once, with its end
    followed = await eventually(lambda: _ended(chat, body["events_url"]), timeout=60)
    assert "".join(e["answer"] for e in followed if e["event"] == "message") == "".join(WORDS)
    assert [e["event"] for e in followed].count("message_end") == 1
    stored = await eventually(lambda: _stored_answers(chat, body["conversation_id"]),
                              timeout=30)
    assert [m["id"] for m in stored] == [body["message_id"]]
    assert len(chat.provider.chat_requests) == 1


async def _ended(chat: Chat, events_url: str) -> list[dict[str, Any]] | None:
    r = await chat.node.client.get(events_url, headers=chat.key, timeout=30)
    events = [e for _, e in sse_events(r.content)] if r.status_code == 200 else []
    return events if events and events[-1]["event"] == "message_end" else None


async def test_a_long_outage_ends_a_stream_with_an_error_then_it_resumes(
        chat: Chat, own_redis: EmbeddedRedis) -> None:
    chat.provider.script_chat(ScriptedChat("".join(WORDS), chunks=WORDS, chunk_delay=0.2))
    kept: list[SseEvent] = []
    async with live_answer(chat, "Count", timeout=60) as arriving:
        stopped = False
        async for event_id, event in arriving:
            kept.append((event_id, event))
            if not stopped and len(kept) >= 2:
                stopped = True
                await asyncio.to_thread(own_redis.stop)
    last_id, broken = kept[-1]
    assert broken["event"] == "error" and broken["code"] == "stream_interrupted", broken
    assert last_id is None  # not a stream entry: resuming starts after the last real one
    await asyncio.to_thread(own_redis.start)
    resume_from = next(i for i, e in reversed(kept) if i is not None)
    task_id = kept[0][1]["task_id"]

    async def rest() -> list[dict[str, Any]] | None:
        r = await chat.node.client.get(f"/v1/chat-messages/{task_id}/events",
                                       params={"user": "ann"}, timeout=30,
                                       headers={**chat.key, "Last-Event-ID": resume_from})
        events = [e for _, e in sse_events(r.content)] if r.status_code == 200 else []
        return events if events and events[-1]["event"] == "message_end" else None

    later = await eventually(rest, timeout=60)
    before = [e for i, e in kept if i is not None]
    text = "".join(e["answer"] for e in before + later if e["event"] == "message")
    assert text == "".join(WORDS)
    assert len(chat.provider.chat_requests) == 1


async def test_after_a_restart_no_request_fails_on_a_stale_pooled_connection(
        chat: Chat, own_redis: EmbeddedRedis) -> None:
    # many connections pooled: concurrent answers each hold one while reading their stream
    answers = await asyncio.gather(*[chat.send(f"warm {i}") for i in range(20)])
    assert {a.status_code for a in answers} == {200}
    await asyncio.to_thread(own_redis.stop)
    await asyncio.to_thread(own_redis.start)

    async def ready() -> bool:
        return (await chat.node.client.get("/ready")).status_code == 200

    await eventually(ready, timeout=30)
    after = [await chat.send(f"after {i}") for i in range(10)]
    after += await asyncio.gather(*[chat.send(f"together {i}") for i in range(20)])
    assert [a.status_code for a in after] == [200] * 30, [a.text for a in after
                                                          if a.status_code != 200]
