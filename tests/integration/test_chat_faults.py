"""The chat worker is SIGKILLed mid-answer and another member takes over: the message is
answered once (the stored answer holds no duplicated text), and the client's stream,
after a `message_replace` voiding the dead attempt's tokens, ends with `message_end`.
Nothing stays pending."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from tests.chat import KEY, MODEL, Chat, app_with_key, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat
from tests.harness import eventually, node_settings, running_node, served

ROOT = Path(__file__).resolve().parents[2]
WORDS = [f"word{i} " for i in range(30)]


def spawn_chat_worker(env: dict[str, str], member: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--roles", "conversation.chat", "--member", member],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_chat_worker_killed_mid_answer_answers_once_elsewhere(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
) -> None:
    settings = node_settings(postgres, fresh_database("chatfault"), redis_url)
    # Everything but the chat processor runs here; it runs in processes we can kill.
    roles = ["relay", "commands", "projections"]
    with FakeOpenAIServer(api_key=KEY, models={MODEL}) as provider:
        async with running_node(settings, roles=roles) as node:
            auth = await node.setup_and_login()
            await connect_provider(node, auth, provider)
            app_id, key = await app_with_key(node, auth)
            chat = Chat(node, auth, app_id, key, provider)
            await chat.configure()
            provider.reset()  # forget the request that validated the credentials
            reply = ScriptedChat("".join(WORDS), chunks=WORDS, chunk_delay=0.15)
            provider.script_chat(reply, reply)  # the dead attempt's, then the next one's

            env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
            workers = [spawn_chat_worker(env, "chat-1")]
            events: list[dict[str, Any]] = []
            try:
                async with served(node.app) as url, httpx.AsyncClient(
                        base_url=url, timeout=120) as http, http.stream(
                        "POST", "/v1/chat-messages", headers=key, json={
                            "inputs": {}, "query": "Count", "user": "ann",
                            "response_mode": "streaming"}) as response:
                    assert response.status_code == 200, await response.aread()
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        events.append(orjson.loads(line[len("data: "):]))
                        if len(events) == 5:  # mid-answer
                            workers[0].send_signal(signal.SIGKILL)
                            workers[0].wait()
                            workers.append(spawn_chat_worker(env, "chat-2"))
            finally:
                for worker in workers:
                    worker.kill()
                    worker.wait()

            kinds = [e["event"] for e in events]
            assert kinds[-1] == "message_end" and "error" not in kinds
            assert kinds.count("message_replace") == 1
            replaced = kinds.index("message_replace")
            assert 5 <= replaced < len(WORDS)  # the dead attempt streamed part of it
            assert events[replaced]["answer"] == ""
            final = "".join(e["answer"] for e in events[replaced + 1:] if e["event"] == "message")
            assert final == "".join(WORDS)

            conversation = events[0]["conversation_id"]

            async def stored() -> Any:
                r = await node.client.get("/v1/messages", headers=key, params={
                    "user": "ann", "conversation_id": conversation})
                data = r.json()["data"]
                return data if data and data[0]["status"] != "pending" else None

            (message,) = await eventually(stored)
            assert message["status"] == "normal" and message["answer"] == "".join(WORDS)
            async with node.container.engine.connect() as conn:
                ends = (await conn.execute(text(
                    "SELECT count(*) FROM stored_events WHERE originator_id = :c"
                    " AND topic IN ('Conversation:MessageAnswered', 'Conversation:MessageFailed',"
                    " 'Conversation:MessageStopped')"), {"c": conversation})).scalar()
            assert ends == 1
            assert provider.calls("/chat/completions") == 2
