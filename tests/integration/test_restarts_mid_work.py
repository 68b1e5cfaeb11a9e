"""Eddy's own servers fail in the middle of work: Valkey killed (SIGKILL, as a crash: what
its AOF had not written is gone) or Postgres restarted, while chat answers stream, while an
annotation-reply job runs, while a projection is rebuilt. Each ends with every accepted
message answered once or failed visibly (an SSE client never sees its stream end silently,
no message gets two answers, the model is asked at most once more per message, and only
with the retry shown), the job ended and the collection consistent, the rebuild completed
or cleanly redone, equal to the live version."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
from projections import versions as pv
from projections.rebuild import rebuild
from projections.tables import PROJECTION_NAME
from schemas.conversation.naming import annotation_collection
from tests.chat import MODEL, Chat, chat_node, sse_events
from tests.e2e.test_annotations import REPLY, connect_embeddings, listed, reply_settings
from tests.e2e.test_knowledge import create_dataset, create_text_document
from tests.fakes.openai_server import ScriptedChat
from tests.harness import eventually, node_settings, served

WORDS = [f"w{i} " for i in range(30)]
STREAMS = 4


@dataclass
class Servers:
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis


@pytest.fixture
def servers(embedded_root: Path) -> Iterator[Servers]:
    """A Postgres and a Valkey of the test's own, to kill and restart."""
    name = uuid.uuid4().hex[:6]
    postgres = EmbeddedPostgres(embedded_root / f"pg-{name}")
    redis = EmbeddedRedis(embedded_root / f"valkey-{name}")
    postgres.start()
    try:
        redis.start()
        try:
            yield Servers(postgres, redis)
        finally:
            redis.stop()
    finally:
        postgres.stop()


def answer_to(query: str, faults: int = 1) -> str:
    return f"{query}: " + "".join(WORDS * faults)


def slow_answer(faults: int, body: dict[str, Any]) -> ScriptedChat:
    """The question back, then words a tenth of a second apart: time for `faults` failures
    mid-answer."""
    query = body["messages"][-1]["content"]
    return ScriptedChat(answer_to(query, faults), chunks=[f"{query}: ", *WORDS * faults],
                        chunk_delay=0.1)


@pytest.fixture
async def chat(servers: Servers) -> AsyncIterator[Chat]:
    database = f"faults_{uuid.uuid4().hex[:8]}"
    servers.postgres.create_database(database)
    settings = node_settings(servers.postgres, database, servers.redis.url,
                             COMMAND_TIMEOUT_SECONDS=5, PROJECTION_WAIT_SECONDS=5)
    async with chat_node(settings, frozenset({MODEL, "bge-m3"})) as chat:
        yield chat


# -- the faults ---------------------------------------------------------------------------

async def kill_valkey(servers: Servers) -> None:
    """SIGKILL, a second down, then started again on its data (the AOF)."""
    pid = servers.redis.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    async def gone() -> bool:
        return servers.redis.pid is None

    await eventually(gone, timeout=10, interval=0.05)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(servers.redis.start)


async def restart_postgres(servers: Servers) -> None:
    """A fast shutdown (open transactions rolled back, clients cut off), a second down."""
    await asyncio.to_thread(servers.postgres.stop)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(servers.postgres.start)


FAULTS: dict[str, Callable[[Servers], Awaitable[None]]] = {
    "valkey-killed": kill_valkey, "postgres-restarted": restart_postgres}


# -- streamed chat answers --------------------------------------------------------------------

async def stream_answer(http: httpx.AsyncClient, chat: Chat, query: str,
                        events: list[dict[str, Any]]) -> None:
    """One streamed chat request, its events appended to `events` as they come."""
    async with http.stream("POST", "/v1/chat-messages", headers=chat.key, json={
            "inputs": {}, "query": query, "user": "ann", "response_mode": "streaming"}) as r:
        assert r.status_code == 200, await r.aread()
        buffer = b""
        async for piece in r.aiter_bytes():
            buffer += piece
            blocks, _, buffer = buffer.rpartition(b"\n\n")
            if blocks:
                events += [e for _, e in sse_events(blocks + b"\n\n") if e]


def shown(events: list[dict[str, Any]]) -> str:
    """The answer as a client shows it: tokens, each `message_replace` starting over."""
    text_ = ""
    for e in events:
        if e["event"] == "message":
            text_ += e["answer"]
        elif e["event"] == "message_replace":
            text_ = e["answer"]
    return text_


async def stored(chat: Chat, conversation_id: str) -> list[dict[str, Any]] | None:
    """The conversation's messages once its last one ended (answered or failed)."""
    r = await chat.node.client.get("/v1/messages", headers=chat.key, params={
        "user": "ann", "conversation_id": conversation_id})
    data = r.json().get("data", []) if r.status_code == 200 else []
    ended = data and (data[-1]["answer"] or data[-1]["status"] == "error")
    return data if ended else None


@pytest.mark.parametrize("fault", FAULTS)
async def test_streamed_answers_end_once_when_a_server_fails_mid_answer(
        chat: Chat, servers: Servers, fault: str) -> None:
    await streams_through(chat, servers, [fault], STREAMS)


@pytest.mark.slow
async def test_many_streamed_answers_end_once_through_repeated_failures(
        chat: Chat, servers: Servers) -> None:
    await streams_through(chat, servers, [*FAULTS, *FAULTS], 4 * STREAMS)


async def streams_through(chat: Chat, servers: Servers, faults: list[str],
                          count: int) -> None:
    """`count` answers streamed at once; each fault of `faults` in turn once every stream
    is mid-answer (the answers are long enough for all of them)."""
    chat.provider.chat_responder = partial(slow_answer, len(faults))
    queries = [f"question {i}" for i in range(count)]
    streams: list[list[dict[str, Any]]] = [[] for _ in queries]
    async with served(chat.node.app) as url, httpx.AsyncClient(base_url=url,
                                                               timeout=120) as http:
        clients = [asyncio.create_task(stream_answer(http, chat, q, events))
                   for q, events in zip(queries, streams, strict=True)]
        for fault in faults:
            tokens = [sum(e["event"] == "message" for e in s) for s in streams]

            async def all_mid_answer(before: list[int] = tokens) -> bool:
                return all(sum(e["event"] == "message" for e in s) >= n + 2
                           for s, n in zip(streams, before, strict=True))

            await eventually(all_mid_answer, timeout=60, interval=0.05)
            await FAULTS[fault](servers)
        await asyncio.wait_for(asyncio.gather(*clients), timeout=180)

    asked = Counter(r.body["messages"][-1]["content"] for r in chat.provider.chat_requests)
    for query, events in zip(queries, streams, strict=True):
        kinds = [e["event"] for e in events]
        assert kinds[-1] in ("message_end", "error"), (query, kinds)  # never a silent end
        assert kinds.count("message_end") + kinds.count("error") == 1, (query, kinds)
        # asked again only with the retry shown to the client, once per fault at most
        assert asked[query] <= 1 + kinds.count("message_replace"), (query, asked, kinds)
        assert asked[query] <= 1 + len(faults), (query, asked)
        conversation_id = events[0]["conversation_id"]
        messages = await eventually(partial(stored, chat, conversation_id), timeout=60)
        assert len(messages) == 1, messages  # one message, one answer
        (message,) = messages
        assert message["id"] == events[0]["message_id"]
        if kinds[-1] == "message_end":
            assert message["answer"] == shown(events) == answer_to(query, len(faults)), (
                query, kinds)
        else:
            assert message["status"] == "error" and message["error"], message


# -- an annotation-reply job ------------------------------------------------------------------

@pytest.mark.parametrize("fault", FAULTS)
async def test_an_annotation_reply_job_ends_consistent_when_a_server_fails_mid_job(
        chat: Chat, servers: Servers, fault: str) -> None:
    await connect_embeddings(chat)
    created = []
    for i in range(150):
        r = await chat.node.client.post("/v1/apps/annotations", headers=chat.key, json={
            "question": f"question number {i} about the museum?", "answer": f"answer {i}"})
        assert r.status_code == 201, r.text
        created.append(r.json()["id"])
    chat.provider.reset()  # the model's check when connected is no job's embedding
    chat.provider.delay_next(0.5, count=3)  # each batch of 64 embeddings takes a while

    async def fail_once_embedding() -> None:
        async def embedding() -> bool:
            return bool(chat.provider.embedding_requests)

        await eventually(embedding, timeout=30, interval=0.02)
        await FAULTS[fault](servers)

    failing = asyncio.create_task(fail_once_embedding())
    started = await chat.node.client.post(f"{REPLY}/enable", headers=chat.key,
                                          json=reply_settings(threshold=0.9))
    assert started.status_code == 200, started.text

    async def ended() -> dict[str, Any] | None:
        r = await chat.node.client.get(
            f"{REPLY}/enable/status/{started.json()['job_id']}", headers=chat.key)
        if r.status_code == 503:  # while the server is down: asked again, as a client would
            return None
        assert r.status_code == 200, r.text
        return r.json() if r.json()["job_status"] in ("completed", "error") else None

    job = await eventually(ended, timeout=90, interval=0.2)
    await failing
    assert job["job_status"] == "completed", job

    annotations = await listed(chat, limit=100, page=1)
    assert annotations["total"] == len(created)
    collection = annotation_collection(uuid.UUID(chat.app_id),
                                       uuid.UUID(started.json()["job_id"]))
    async with chat.node.container.engine.connect() as conn:
        ids = (await conn.execute(text(f'SELECT id FROM vectors."c_{collection}"'))).scalars().all()
    assert sorted(map(str, ids)) == sorted(created)  # every annotation, once
    # and the reply works: a question asked as annotated gets its answer, no model call
    r = await chat.send("question number 7 about the museum?")
    assert r.status_code == 200 and r.json()["answer"] == "answer 7", r.text


# -- a projection rebuild ---------------------------------------------------------------------

async def test_a_rebuild_interrupted_by_a_postgres_restart_is_redone_cleanly(
        chat: Chat, servers: Servers) -> None:
    node, c = chat.node, chat.node.container
    token = await node.client.post("/console/api/datasets/api-keys", headers=chat.auth)
    key = {"Authorization": f"Bearer {token.json()['token']}"}
    for d in range(4):
        dataset = await create_dataset(node, key, f"rivers {d}", technique="economy")
        for i in range(5):
            await create_text_document(node, key, dataset["id"], f"doc {i}",
                                       f"Rivers {i}.\n\nLakes {i}.", indexing_technique="economy")
    for i in range(40):
        await node.client.post("/console/api/apps", headers=chat.auth,
                               json={"name": f"app {i}", "mode": "chat"})
    started = asyncio.Event()

    def progress(_: object) -> None:
        started.set()

    building = asyncio.create_task(rebuild(
        c.read_models.database, c.settings.database_dsn(), c.store, c.event_types,
        c.projections[PROJECTION_NAME], progress))
    await asyncio.wait_for(started.wait(), timeout=60)
    await restart_postgres(servers)
    result = await asyncio.wait_for(building, timeout=120)

    assert result.version.state == pv.LIVE
    versions = await pv.list_versions(c.read_models.database, PROJECTION_NAME)
    assert [(v.schema, v.state) for v in versions if not v.active] == [
        (result.version.schema, pv.LIVE)]  # nothing half-built left behind

    async def settled() -> bool:
        lags = await pv.maintained_lags(c.engine, c.projections.values())
        return set(lags.values()) == {0}

    await eventually(settled, timeout=60)
    live = next(v for v in versions if v.active)
    async with c.read_models.database.connect() as conn:
        for table in ("apps", "datasets", "documents"):
            columns = (await conn.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = :s"
                " AND table_name = :t ORDER BY ordinal_position"),
                {"s": live.schema, "t": table})).scalars().all()
            quoted = ", ".join(f'"{col}"' for col in columns)
            rows = {}
            for schema in (live.schema, result.version.schema):
                rows[schema] = (await conn.execute(text(
                    f'SELECT {quoted} FROM "{schema}"."{table}" ORDER BY {quoted}'))).all()
            assert rows[result.version.schema] == rows[live.schema], table
