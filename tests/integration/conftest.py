"""Fixtures of the integration tier."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from config import Settings
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import node_settings

_ENV = ("DB_HOST", "DB_PORT", "DB_USERNAME", "DB_PASSWORD", "DB_DATABASE", "REDIS_HOST",
        "REDIS_PORT", "SECRET_KEY", "EVENT_TOPIC_PREFIX", "EVENT_BUS",
        "KAFKA_BOOTSTRAP_SERVERS", "COMMAND_PARTITIONS", "EVENT_PARTITIONS", "TOPIC_PARTITIONS")


def operator_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    """Put a node's settings in the environment, where the `eddy` commands read them."""
    for name in _ENV:
        monkeypatch.setenv(name, str(getattr(settings, name)))
    return settings


@pytest.fixture
def settings(postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A node's settings, also in the environment, where the `eddy` commands read them."""
    return operator_env(monkeypatch, node_settings(postgres, fresh_database("ops"), redis_url))


@pytest.fixture
def fake(server: FakeOpenAIServer) -> FakeOpenAIServer:
    """The test module's fake provider (its `server` fixture), reset for this test."""
    server.reset()
    return server
