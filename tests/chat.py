"""Chat apps for tests: a workspace with a model provider (the fake OpenAI server), an app
and its Service API key; reading their answers' server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from config import Settings
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat
from tests.harness import Node, eventually, running_node, served
from tests.spec import chat_event_schema, validate

# (id, event) of one SSE block; the id is None on an event that is no stream entry (an
# interrupted stream's closing error).
SseEvent = tuple[str | None, dict[str, Any]]

KEY = "sk-fake-provider-key-0123456789"
MODEL = "qwen2.5"
PROVIDERS = "/console/api/workspaces/current/model-providers"


@dataclass
class Chat:
    node: Node
    auth: dict[str, str]
    app_id: str
    key: dict[str, str]
    provider: FakeOpenAIServer

    async def configure(self, **config: Any) -> None:
        body = {"model": {"provider": "openai_api_compatible", "name": MODEL, "mode": "chat",
                          "completion_params": {"temperature": 0.1}}, **config}
        saved = await self.node.client.post(f"/console/api/apps/{self.app_id}/model-config",
                                            headers=self.auth, json=body)
        assert saved.status_code == 200, saved.text

    async def send(self, query: str, mode: str = "blocking", path: str = "/v1/chat-messages",
                   **body: Any) -> Any:
        return await self.node.client.post(path, headers=self.key, json={
            "inputs": {}, "query": query, "user": "ann", "response_mode": mode, **body})


async def connect_provider(node: Node, auth: dict[str, str], provider: FakeOpenAIServer,
                           context_size: int = 32768) -> None:
    saved = await node.client.post(
        f"{PROVIDERS}/openai_api_compatible/models", headers=auth, json={
            "model": MODEL, "model_type": "llm", "credentials": {
                "api_key": KEY, "endpoint_url": provider.base_url, "mode": "chat",
                "context_size": str(context_size), "max_tokens_to_sample": "512"}})
    assert saved.status_code == 200, saved.text


async def app_with_key(node: Node, auth: dict[str, str], mode: str = "chat",
                       name: str = "City guide") -> tuple[str, dict[str, str]]:
    app = await node.client.post("/console/api/apps", headers=auth,
                                 json={"name": name, "mode": mode, "icon": "🏙"})
    assert app.status_code == 201, app.text
    app_id = app.json()["id"]
    key = await node.client.post(f"/console/api/apps/{app_id}/api-keys", headers=auth)
    return app_id, {"Authorization": f"Bearer {key.json()['token']}"}


def sse_events(raw: bytes) -> list[SseEvent]:
    """(id, event) per SSE block of `raw`, keep-alive pings left out."""
    out: list[SseEvent] = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("id"), orjson.loads(lines["data"])))
    return out


def check_chat_events(events: list[dict[str, Any]]) -> None:
    """Every event as Dify's spec has it, each naming its task, message and conversation."""
    for event in events:
        validate(chat_event_schema(event["event"]), event)
        assert {"task_id", "message_id", "conversation_id", "created_at"} <= event.keys()


@asynccontextmanager
async def live_answer(chat: Chat, query: str,
                      timeout: float = 5.0) -> AsyncIterator[AsyncIterator[SseEvent]]:
    """A streaming chat request over real HTTP (the app served on loopback), its events as
    they arrive. Leaving the block drops the connection, even mid-answer. `timeout`: httpx's
    per read/connect/write (its default is 5 s)."""
    async with served(chat.node.app) as url, \
            httpx.AsyncClient(base_url=url, timeout=timeout) as http, \
            http.stream("POST", "/v1/chat-messages", headers=chat.key, json={
                "inputs": {}, "query": query, "user": "ann",
                "response_mode": "streaming"}) as response:
        events = _arriving(response)
        try:
            yield events
        finally:
            await events.aclose()



async def check_stop_from_another_request(chat: Chat, words: int,
                                          chunk_delay: float) -> list[dict[str, Any]]:
    """A streamed answer of `words` words is stopped after its second event: by another
    user first (nothing happens), then by its own. The stream ends with message_end after
    part of the answer, and that part is stored as a stopped message. Returns the events."""
    await chat.configure()
    chat.provider.script_chat(ScriptedChat(" ".join(f"w{i}" for i in range(words)),
                                           chunk_delay=chunk_delay))
    seen: list[dict[str, Any]] = []
    async with live_answer(chat, "Count") as events:
        async for _, event in events:
            seen.append(event)
            if len(seen) == 2:
                for user in ("bob", "ann"):
                    stop = await chat.node.client.post(
                        f"/v1/chat-messages/{event['task_id']}/stop", headers=chat.key,
                        json={"user": user})
                    assert stop.json() == {"result": "success"}
    assert seen[-1]["event"] == "message_end"
    streamed = "".join(e["answer"] for e in seen if e["event"] == "message")
    assert 0 < len(streamed.split()) < words

    async def ended() -> Any:
        r = await chat.node.client.get("/v1/messages", headers=chat.key, params={
            "user": "ann", "conversation_id": seen[0]["conversation_id"]})
        found = r.json()["data"] if r.status_code == 200 else []
        return found[0] if found and found[0]["status"] != "pending" else None

    stored = await eventually(ended, interval=0.05)
    assert stored["status"] == "stopped" and stored["answer"] == streamed
    return seen


async def _arriving(response: httpx.Response) -> AsyncIterator[SseEvent]:
    buffer = b""
    async for piece in response.aiter_bytes():
        buffer += piece
        blocks, _, buffer = buffer.rpartition(b"\n\n")
        for event in sse_events(blocks):
            yield event


@asynccontextmanager
async def chat_node(settings: Settings, models: frozenset[str] = frozenset({MODEL})
                    ) -> AsyncIterator[Chat]:
    """A node on `settings` (all roles) with the fake provider connected and a chat app
    configured on it; the provider forgets the set-up's requests."""
    with FakeOpenAIServer(api_key=KEY, models=set(models)) as provider:
        async with running_node(settings) as node:
            auth = await node.setup_and_login()
            await connect_provider(node, auth, provider)
            app_id, key = await app_with_key(node, auth)
            chat = Chat(node, auth, app_id, key, provider)
            await chat.configure()
            provider.reset()
            yield chat
