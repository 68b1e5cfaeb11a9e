from __future__ import annotations

import pytest

from config import ConfigError, EventBusKind, load_settings


def test_invalid_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFY_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="DIFY_PORT"):
        load_settings()


def test_kafka_without_bootstrap_servers_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_BUS", "kafka")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        load_settings()


def test_bootstrap_servers_alone_select_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENT_BUS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    assert load_settings().bus is EventBusKind.KAFKA


def test_smtp_without_a_server_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_TYPE", "smtp")
    monkeypatch.delenv("SMTP_SERVER", raising=False)
    with pytest.raises(ConfigError, match="SMTP_SERVER"):
        load_settings()


def test_dify_names_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_USERNAME", "dify")
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    settings = load_settings()
    assert settings.DIFY_PORT == 5001
    assert settings.database_dsn() == "postgresql://dify:s3cret@db.internal:5432/dify"
    assert not settings.embedded_postgres and settings.embedded_redis


def test_env_example_documents_every_setting() -> None:
    from pathlib import Path

    from config import Settings

    documented = {line.split("=", 1)[0] for line in
                  (Path(__file__).parents[2] / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    assert set(Settings.model_fields) - documented == set()
