from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway import auth
from tests.chat import KEY, MODEL, Chat, app_with_key, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node
from tests.memory import memory_app


@pytest.fixture
async def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    """The real gateway app and workers, in memory (tests/memory.py)."""
    # Argon2's production cost (tens of ms of CPU per hash) guards stored passwords, not the
    # unit tier; a hash carries its parameters, so hashing and verifying work as before.
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                        parallelism=1))
    async with memory_app(tmp_path) as n:
        yield n


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAIServer]:
    """The fake OpenAI-protocol model provider, on loopback in a thread of its own."""
    with FakeOpenAIServer(api_key=KEY, models={MODEL}) as fake:
        yield fake


@pytest.fixture
async def chat(node: Node, provider: FakeOpenAIServer) -> Chat:
    """A set-up workspace with the provider connected and a chat app with its key."""
    provider.reset()
    auth = await node.setup_and_login()
    await connect_provider(node, auth, provider)
    app_id, key = await app_with_key(node, auth)
    return Chat(node, auth, app_id, key, provider)
