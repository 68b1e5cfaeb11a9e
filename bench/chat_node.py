"""An Eddy node for the chat-facing benchmarks (bench.chat, bench.memory): embedded
Postgres and Valkey, the fake OpenAI-protocol provider streaming every reply as 20 chunks
5 ms apart, `eddy worker` (all roles) and `eddy api` as processes, and a chat app on the
provider's model with its Service API key."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from adapters.embedded.ports import LOOPBACK
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
from bench import procs
from bench.commands import Server, _console_auth, _migrate, _settings, _start_server
from config import Settings
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat

KEY, MODEL = "sk-bench-0123456789", "bench-model"
CHUNKS = [f"token{i} " for i in range(20)]


@dataclass(frozen=True)
class ChatNode:
    root: Path  # the run's work dir: data and logs
    settings: Settings  # the node's (a benchmark's in-process parts use the same servers)
    pg: EmbeddedPostgres
    redis: EmbeddedRedis
    provider: FakeOpenAIServer
    worker: subprocess.Popen[bytes]
    api: Server
    auth: dict[str, str]  # the console's Authorization header
    app_key: dict[str, str]  # the chat app's Service API Authorization header


@asynccontextmanager
async def chat_node(name: str) -> AsyncIterator[ChatNode]:
    """Everything started under a work dir `eddy-bench-<name>-…`, all stopped (by PID) at
    the end; the work dir goes if the block completed, else its logs stay to be read."""
    root = Path(tempfile.mkdtemp(prefix=f"eddy-bench-{name}-"))
    pg = EmbeddedPostgres(root / "pg").start()
    redis = EmbeddedRedis(root / "redis").start()
    provider = FakeOpenAIServer(api_key=KEY, models={MODEL}).start()
    provider.chat_responder = lambda body: ScriptedChat("".join(CHUNKS), chunks=CHUNKS,
                                                        chunk_delay=0.005)
    completed = False
    try:
        pg.create_database(f"bench_{name}")
        settings = _settings(pg, f"bench_{name}", redis, None, root / "data")
        await _migrate(settings)
        env = {**os.environ, **settings.as_env(LOG_LEVEL="WARNING")}
        worker_log = root / "worker.log"
        worker = procs.spawn(["-m", "cli", "worker", "--member", f"bench-{name}"], env,
                             worker_log)
        api = await _start_server(
            "eddy api", lambda port: ["-m", "cli", "api"],
            lambda port: {**env, "DIFY_BIND_ADDRESS": LOOPBACK, "DIFY_PORT": str(port)},
            "/ready", root / "api.log",
            alive=lambda: procs.check_alive(worker, "eddy worker", worker_log))
        auth = await _console_auth(api.url, lambda: None)
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as c:
            (await c.post(
                "/console/api/workspaces/current/model-providers/openai_api_compatible/models",
                headers=auth, json={"model": MODEL, "model_type": "llm", "credentials": {
                    "api_key": KEY, "endpoint_url": provider.base_url, "mode": "chat",
                    "context_size": "8192"}})).raise_for_status()
            app = (await c.post("/console/api/apps", headers=auth,
                                json={"name": "Bench", "mode": "chat"})).json()
            token = (await c.post(f"/console/api/apps/{app['id']}/api-keys",
                                  headers=auth)).json()["token"]
        yield ChatNode(root, settings, pg, redis, provider, worker, api, auth,
                       {"Authorization": f"Bearer {token}"})
        completed = True
    finally:
        procs.stop_children()
        provider.stop()
        redis.stop()
        pg.stop()
        procs.finish(root, completed)
