"""API tokens never in plaintext past the gateway; e-mail addresses checked as Dify does."""

from __future__ import annotations

from uuid import uuid4

import orjson
import pytest
from pydantic import ValidationError

from adapters.secrets import Keyring
from bootstrap import ASSEMBLY
from events.postgres_store import decode_stored
from gateway.auth import new_api_token, reveal_api_token, seal_api_token
from schemas.platform import api
from schemas.platform import commands as pc
from schemas.platform.events import ApiKeyCreated
from schemas.platform.naming import api_token_hash, api_token_hint

TYPES = ASSEMBLY.event_types
KEY = "test-secret-key-which-is-long-enough-for-hs256"


def test_sealed_token_hides_the_token_and_opens_only_with_the_key() -> None:
    token = new_api_token("app")
    sealed = seal_api_token(Keyring(KEY), token)
    assert token not in sealed.model_dump_json()
    assert sealed.sha256 == api_token_hash(token) and len(sealed.sha256) == 64
    assert sealed.hint == f"app-...{token[-4:]}"
    assert reveal_api_token(Keyring(KEY), sealed.ciphertext, sealed.hint) == token
    # another SECRET_KEY (or none stored): the key still works by hash, the console shows the hint
    assert reveal_api_token(Keyring("another-secret-key"), sealed.ciphertext,
                            sealed.hint) == sealed.hint
    assert reveal_api_token(Keyring(KEY), None, sealed.hint) == sealed.hint


def test_a_command_cannot_smuggle_a_token_as_its_hash() -> None:
    with pytest.raises(ValidationError):
        pc.SealedToken(sha256="app-plaintexttoken", ciphertext="x", hint="app-...oken")


def test_v1_api_key_created_is_upcast_without_its_plaintext() -> None:
    token = "app-Zm9vYmFyYmF6cXV4cXV1eA"
    stored = orjson.dumps({
        "event_id": str(uuid4()), "schema_version": 1, "tenant_id": str(uuid4()),
        "occurred_at": "2026-01-02T03:04:05+00:00", "correlation_id": str(uuid4()),
        "causation_id": str(uuid4()),
        "payload": {"key_type": "app", "app_id": str(uuid4()), "token": token},
    })
    event = decode_stored(TYPES, uuid4(), 1, "ApiKey:ApiKeyCreated", stored, position=3)
    assert event.schema_version == ApiKeyCreated.schema_version == 2
    assert isinstance(event.payload, ApiKeyCreated)
    assert (event.payload.token_hash, event.payload.token_ciphertext,
            event.payload.token_hint) == (api_token_hash(token), None, "app-...V1eA")
    assert token not in event.to_json().decode()


def test_token_hint_keeps_prefix_and_last_four() -> None:
    assert api_token_hint("dataset-abcdefghijkl") == "dataset-...ijkl"
    assert api_token_hint("nodash123456") == "...3456"


@pytest.mark.parametrize("email", [
    "admin@corp.local", "x@host.test", "Owner@Example.com", "first.last+tag@mail.example.org",
    "o'brien@sub-domain.example.io", "user_1@intra.lan",
])
def test_dify_accepts_internal_and_ordinary_addresses(email: str) -> None:
    body = api.SetupRequest(email=email, name="Owner", password="passw0rd1")
    assert body.email == email
    assert api.LoginRequest(email=email, password="x").email == email


@pytest.mark.parametrize("email", [
    "not-an-email", "a@b", "a@b.c", "two@@example.com", "space in@example.com",
    "@example.com", "user@", "user@exa mple.com", "user@.com", "x" * 250 + "@example.com",
])
def test_dify_refuses_malformed_addresses(email: str) -> None:
    with pytest.raises(ValidationError):
        api.LoginRequest(email=email, password="x")
