"""The command handlers' worker stalls (SIGSTOP) past its lease: Service API requests are
accepted with a 202 their own key can follow (a chat message's task events, a command's
/v1 status URL), /health marks the consumers stalled and the status page names the group;
once the worker resumes, the commands are decided and the message answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from adapters.embedded.postgres import EmbeddedPostgres
from schemas.topics import COMMANDS
from tests.chat import KEY, MODEL, Chat, app_with_key, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat
from tests.harness import Node, eventually, node_settings, running_node

ROOT = Path(__file__).resolve().parents[2]


async def test_stalled_command_worker_leaves_service_api_clients_a_way_to_follow(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
) -> None:
    settings = node_settings(postgres, fresh_database("stall"), redis_url,
                             COMMAND_TIMEOUT_SECONDS=2, HEALTH_LAG_STALL_SECONDS=1,
                             REDIS_BUS_LEASE_SECONDS=1)
    with FakeOpenAIServer(api_key=KEY, models={MODEL}) as provider:
        # Everything but the command handlers runs here; they run in a process we pause.
        roles = ["relay", "projections", "conversation.chat"]
        async with running_node(settings, roles=roles) as node:
            worker = spawn_command_worker({**os.environ,
                                           **settings.as_env(LOG_LEVEL="WARNING")})
            try:
                await eventually(lambda: _members(node), timeout=60)
                auth = await node.setup_and_login()
                await connect_provider(node, auth, provider)
                app_id, key = await app_with_key(node, auth)
                await Chat(node, auth, app_id, key, provider).configure()
                provider.script_chat(ScriptedChat("Back again"))

                worker.send_signal(signal.SIGSTOP)
                r = await node.client.post("/v1/chat-messages", headers=key, json={
                    "inputs": {}, "query": "Still there?", "user": "ann",
                    "response_mode": "streaming"})
                assert r.status_code == 202, r.text
                message = r.json()
                r = await node.client.post("/v1/apps/annotations", headers=key,
                                           json={"question": "Stalled?", "answer": "Yes"})
                assert r.status_code == 202, r.text
                accepted = r.json()
                assert accepted["status_url"] == f"/v1/commands/{accepted['command_id']}"
                status = await node.client.get(accepted["status_url"], headers=key)
                assert status.status_code == 200, status.text
                assert status.json()["status"] == "pending"

                async def stalled() -> Any:
                    health = await node.client.get("/health")
                    return health.status_code == 503 \
                        and health.json()["checks"]["consumers"] == "stalled"

                await eventually(stalled, timeout=30, interval=0.5)
                page = (await node.client.get("/status.json", headers=auth)).json()
                assert "commands" in page["dependencies"]["consumers"]["stalled"]

                worker.send_signal(signal.SIGCONT)

                async def decided() -> Any:
                    body = (await node.client.get(accepted["status_url"], headers=key)).json()
                    return body if body["status"] != "pending" else None

                assert (await eventually(decided, timeout=60))["status"] == "accepted"
                events = await node.client.get(message["events_url"], headers=key, timeout=60)
                assert events.status_code == 200
                sent = [orjson.loads(line[len("data: "):]) for line in events.text.splitlines()
                        if line.startswith("data: ")]
                assert "".join(e["answer"] for e in sent if e["event"] == "message") \
                    == "Back again"
                assert sent[-1]["event"] == "message_end"
                assert sent[-1]["task_id"] == message["task_id"]

                async def healthy() -> Any:
                    return (await node.client.get("/health")).status_code == 200

                await eventually(healthy, timeout=30, interval=0.5)
            finally:
                worker.send_signal(signal.SIGCONT)
                worker.kill()
                worker.wait()


def spawn_command_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--roles", "commands", "--member",
         "commands-1"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _members(node: Node) -> bool:
    return bool((await node.container.bus.group_state("commands", [COMMANDS])).members)
