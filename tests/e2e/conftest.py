from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from tests.harness import Node, node_settings, running_node


@pytest.fixture
async def node(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
               redis_url: str) -> AsyncIterator[Node]:
    settings = node_settings(postgres, fresh_database("e2e"), redis_url)
    async with running_node(settings) as n:
        yield n
