"""The chat worker fails mid-answer and another member takes the message over: SIGKILLed,
or paused (SIGSTOP) past its partition lease and then resumed (SIGCONT) while the new owner
answers. Either way the message is answered once (the stored answer is the new attempt's,
with no duplicated text), and the client's stream, after one `message_replace` voiding the
first attempt's tokens, carries the new attempt's tokens alone and ends with
`message_end`. A resumed stale worker stops: it writes nothing more and calls no model
again. Nothing stays pending."""

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
import pytest
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from contexts.conversation import CHAT
from tests.chat import KEY, MODEL, Chat, app_with_key, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat
from tests.harness import Node, eventually, node_settings, running_node, served

ROOT = Path(__file__).resolve().parents[2]
FIRST = [f"first{i} " for i in range(30)]  # what the attempt that fails streams
WORDS = [f"word{i} " for i in range(30)]  # what the attempt that takes over streams

# (worker processes so far, events the client received so far, spawn a worker) -> None:
# acts on the workers as the answer streams.
Fault = Callable[[list[subprocess.Popen[bytes]], list[dict[str, Any]],
                  Callable[[str], subprocess.Popen[bytes]]], None]


def spawn_chat_worker(env: dict[str, str], member: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--roles", "conversation.chat", "--member", member],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_chat_worker_killed_mid_answer_answers_once_elsewhere(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
) -> None:
    def kill(workers: list[subprocess.Popen[bytes]], events: list[dict[str, Any]],
             spawn: Callable[[str], subprocess.Popen[bytes]]) -> None:
        if len(events) == 5:  # mid-answer
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            workers.append(spawn("chat-2"))

    await _answer_under_fault(postgres, fresh_database, redis_url, kill, 0.15)


class PauseUntilTakenOver:
    """Pause the worker mid-answer until the new owner streams its own answer, then resume
    it: the stale worker finds its partition lost before its next effect and stops."""

    def __init__(self) -> None:
        self.resumed = False

    def __call__(self, workers: list[subprocess.Popen[bytes]], events: list[dict[str, Any]],
                 spawn: Callable[[str], subprocess.Popen[bytes]]) -> None:
        if len(events) == 5:  # mid-answer
            workers[0].send_signal(signal.SIGSTOP)
            workers.append(spawn("chat-2"))  # takes the partition once the lease lapses
        kinds = [e["event"] for e in events]
        if not self.resumed and "message_replace" in kinds \
                and kinds[kinds.index("message_replace"):].count("message") == 3:
            workers[0].send_signal(signal.SIGCONT)  # while the new owner is mid-answer
            self.resumed = True


async def test_chat_worker_paused_past_its_lease_stops_when_resumed(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
) -> None:
    pause = PauseUntilTakenOver()
    await _answer_under_fault(postgres, fresh_database, redis_url, pause, 0.3)
    assert pause.resumed


@pytest.mark.kafka
async def test_chat_worker_paused_past_its_session_stops_when_resumed_on_kafka(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
    kafka_bootstrap: str,
) -> None:
    """The same on Kafka: the group expels the paused member after its session, the new
    owner's deliveries carry a later generation. The resumed member rejoins, and that
    rebalance may move the partition again (Kafka's assignor is not sticky): then its new
    owner answers once more, after another `message_replace`, never the stale attempt."""
    pause = PauseUntilTakenOver()
    await _answer_under_fault(postgres, fresh_database, redis_url, pause, 0.5, kafka_bootstrap,
                              rebalance_may_restart=True)
    assert pause.resumed


async def _answer_under_fault(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
                              redis_url: str, fault: Fault, takeover_delay: float,
                              kafka_bootstrap: str | None = None,
                              rebalance_may_restart: bool = False) -> None:
    settings = node_settings(postgres, fresh_database("chatfault"), redis_url, kafka_bootstrap)
    # Everything but the chat processor runs here; it runs in processes the fault acts on.
    roles = ["relay", "commands", "projections"]
    with FakeOpenAIServer(api_key=KEY, models={MODEL}) as provider:
        async with running_node(settings, roles=roles) as node:
            auth = await node.setup_and_login()
            await connect_provider(node, auth, provider)
            app_id, key = await app_with_key(node, auth)
            chat = Chat(node, auth, app_id, key, provider)
            await chat.configure()
            provider.reset()  # forget the request that validated the credentials
            # The failing attempt's reply, then the next one's (slower: the stale worker
            # resumes while it streams).
            provider.script_chat(ScriptedChat("".join(FIRST), chunks=FIRST, chunk_delay=0.15),
                                 *[ScriptedChat("".join(WORDS), chunks=WORDS,
                                                chunk_delay=takeover_delay)] * 2)

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
                        fault(workers, events, lambda member: spawn_chat_worker(env, member))
            finally:
                for worker in workers:
                    worker.send_signal(signal.SIGCONT)
                    worker.kill()
                    worker.wait()
            await _answered_once(node, key, events, provider, rebalance_may_restart)


async def _answered_once(node: Node, key: dict[str, str], events: list[dict[str, Any]],
                         provider: FakeOpenAIServer, rebalance_may_restart: bool) -> None:
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "message_end" and "error" not in kinds
    attempts = provider.calls("/chat/completions")
    assert attempts in ((2, 3) if rebalance_may_restart else (2,))
    assert kinds.count("message_replace") == attempts - 1
    first = kinds.index("message_replace")
    before = "".join(e["answer"] for e in events[:first] if e["event"] == "message")
    assert len(before.split()) >= 5 and set(before.split()) <= {w.strip() for w in FIRST}
    # Nothing of the first attempt after it was replaced: its worker stopped when resumed.
    after = "".join(e["answer"] for e in events[first:] if e["event"] == "message")
    assert not set(after.split()) & {w.strip() for w in FIRST}
    last = len(kinds) - 1 - kinds[::-1].index("message_replace")
    assert all(e["answer"] == "" for e in events if e["event"] == "message_replace")
    final = "".join(e["answer"] for e in events[last + 1:] if e["event"] == "message")
    assert final == "".join(WORDS)  # one attempt's tokens alone, whole

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

    async def nothing_pending() -> bool:
        state = await node.container.bus.group_state(CHAT.name, [CHAT.name])
        return state.oldest_unacked is None

    await eventually(nothing_pending)

