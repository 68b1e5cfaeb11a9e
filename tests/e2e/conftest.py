from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from tests.chat import KEY, MODEL, Chat, app_with_key, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node, node_settings, running_node
from tests.smtp_sink import SmtpSink


@pytest.fixture
async def node(request: pytest.FixtureRequest, postgres: EmbeddedPostgres,
               fresh_database: Callable[..., str], redis_url: str) -> AsyncIterator[Node]:
    """A node; `@pytest.mark.settings(NAME=value, ...)` on a test overrides its settings."""
    marker = request.node.get_closest_marker("settings")
    settings = node_settings(postgres, fresh_database("e2e"), redis_url,
                             **(marker.kwargs if marker else {}))
    async with running_node(settings) as n:
        yield n


@pytest.fixture
async def mail_node(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
                    redis_url: str, smtp_sink: SmtpSink) -> AsyncIterator[Node]:
    """A node whose mail goes to the `smtp_sink` (MAIL_TYPE=smtp, quick retries):
    `[mail] = await smtp_sink.wait_for(1)`, `mail.link("/activate")`."""
    settings = node_settings(postgres, fresh_database("e2e"), redis_url, **smtp_sink.settings())
    async with running_node(settings) as n:
        yield n


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI-protocol provider serving an LLM, embedding, tts and speech2text
    models."""
    with FakeOpenAIServer(api_key=KEY, models={MODEL, "bge-m3", "tts-1", "whisper-1"}) as fake:
        yield fake


@pytest.fixture
async def chat(node: Node, provider: FakeOpenAIServer) -> AsyncIterator[Chat]:
    """A set-up workspace with the provider connected and a chat app with its key."""
    provider.reset()  # the module's provider: nothing scripted or failing from a test before
    auth = await node.setup_and_login()
    await connect_provider(node, auth, provider)
    app_id, key = await app_with_key(node, auth)
    provider.reset()
    yield Chat(node, auth, app_id, key, provider)
