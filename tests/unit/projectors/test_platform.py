"""The platform context's projectors: setup, apps, API keys, model providers."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import insert

from adapters.secrets import seal
from projections.platform import models as pm
from projections.platform import queries as pq
from projections.platform.tables import workspace_members, workspaces
from projections.tables import account_credentials
from schemas import errors
from schemas.platform import events as pev
from schemas.platform.naming import SETUP_ID, api_token_hash, api_token_hint
from schemas.platform.providers import credentials_purpose, masked, provider_spec
from tests.unit.projectors.harness import (
    T0,
    World,
    exercises,
    stored,
)

# --- platform ------------------------------------------------------------------------------------


async def setup(w: World) -> UUID:
    """The one-time setup: the owner's account and workspace (whose id is the tenant)."""
    owner, credentials = w.actor, uuid4()
    async with w.engine.begin() as conn:  # as the gateway stores it, beside the store
        await conn.execute(insert(account_credentials).values(
            id=credentials, account_id=owner, password_hash="argon2$hash", created_at=T0))
    await w.emit("Setup", SETUP_ID, pev.SetupCompleted(account_id=owner, workspace_id=w.tenant))
    await w.emit("Account", owner, pev.AccountRegistered(
        email="Owner@Example.COM", name="Olga", credentials_id=credentials,
        interface_language="de-DE"))
    await w.emit("Workspace", w.tenant, pev.WorkspaceCreated(
        name="Olga's Workspace", owner_account_id=owner), tenant_id=w.tenant)
    return owner


@exercises(pev.SetupCompleted, pev.AccountRegistered, pev.WorkspaceCreated)
async def test_setup_registers_the_owner_in_their_workspace(world: World) -> None:
    assert await pq.setup_info(world.engine) is None
    owner = await setup(world)

    info = await pq.setup_info(world.engine)
    assert info is not None
    assert (info["id"], info["account_id"], info["workspace_id"]) == (1, owner, world.tenant)
    assert info["setup_at"] == datetime(2025, 3, 1, 9, 0, 1)  # the first event's time

    account = await pq.account_by_email(world.engine, " owner@example.com ")
    assert account is not None
    assert {k: account[k] for k in ("id", "email", "name", "password_hash",
                                    "interface_language", "timezone", "status")} == {
        "id": owner, "email": "owner@example.com", "name": "Olga",
        "password_hash": "argon2$hash", "interface_language": "de-DE", "timezone": "UTC",
        "status": "active"}

    identity = await pq.console_identity(world.engine, owner)
    assert identity is not None and identity[1] == world.tenant
    assert await pq.current_workspace_of(world.engine, owner) == world.tenant
    workspace = await world.one(workspaces, world.tenant)
    assert (workspace["name"], workspace["status"]) == ("Olga's Workspace", "normal")
    [member] = await world.rows(workspace_members)
    assert (member["workspace_id"], member["account_id"], member["role"]) == (
        world.tenant, owner, "owner")


@exercises(pev.AppCreated, pev.AppUpdated, pev.AppDeleted, pev.ApiKeyCreated,
           pev.ApiKeyRevoked)
async def test_apps_and_api_keys_lifecycle(world: World) -> None:
    owner = await setup(world)
    chat, flow = uuid4(), uuid4()
    created = await world.emit("App", chat, pev.AppCreated(
        name="Support Bot", mode="chat", description="answers", created_by=owner))
    await world.emit("App", flow, pev.AppCreated(
        name="Pipeline", mode="workflow", icon_type="image", icon="https://x/i.png",
        icon_background="#000000", created_by=owner))

    app = await pq.app_in_workspace(world.engine, world.tenant, chat)
    assert app is not None
    assert {k: app[k] for k in ("name", "mode", "description", "icon_type", "icon",
                                "icon_background", "created_by", "updated_by",
                                "author_name")} == {
        "name": "Support Bot", "mode": "chat", "description": "answers", "icon_type": "emoji",
        "icon": "🤖", "icon_background": "#FFEAD5", "created_by": owner, "updated_by": owner,
        "author_name": "Olga"}
    assert app["created_at"] == app["updated_at"] == stored(created)
    assert await pq.app_in_workspace(world.engine, uuid4(), chat) is None  # other workspace

    editor = uuid4()
    updated = await world.emit("App", chat, pev.AppUpdated(
        name="Helpdesk", description="", icon_type="emoji", icon="🛟",
        icon_background="#E0F2FE", updated_by=editor))
    app = await pq.app_in_workspace(world.engine, world.tenant, chat)
    assert app is not None
    assert (app["name"], app["description"], app["icon"], app["icon_background"]) == (
        "Helpdesk", "", "🛟", "#E0F2FE")
    assert (app["created_by"], app["updated_by"]) == (owner, editor)
    assert (app["created_at"], app["updated_at"]) == (stored(created), stored(updated))
    listed = await pq.list_apps(world.engine, world.tenant, page=1, limit=10, mode=None,
                                name=None)
    assert [a["name"] for a in listed.items] == ["Pipeline", "Helpdesk"]  # newest first
    chats = await pq.list_apps(world.engine, world.tenant, page=1, limit=10, mode="chat",
                               name="desk")
    assert [a["id"] for a in chats.items] == [chat] and chats.total == 1

    def key_created(key_type: str, app_id: UUID | None, token: str,
                    ciphertext: str | None = "opaque") -> pev.ApiKeyCreated:
        return pev.ApiKeyCreated(key_type=key_type, app_id=app_id,
                                 token_hash=api_token_hash(token), token_ciphertext=ciphertext,
                                 token_hint=api_token_hint(token))

    def by_token(token: str) -> Awaitable[dict[str, Any] | None]:
        return pq.api_key_by_token_hash(world.engine, api_token_hash(token))

    app_keys, dataset_key = [uuid4(), uuid4()], uuid4()
    for n, key in enumerate(app_keys):
        await world.emit("ApiKey", key, key_created("app", chat, f"app-{n}"))
    # a key created before tokens were sealed (an upcast v1 event) has no ciphertext
    await world.emit("ApiKey", dataset_key, key_created("dataset", None, "dataset-0", None))
    keys = await pq.list_api_keys(world.engine, world.tenant, "app", chat)
    # the read model holds no token: its hash, ciphertext and hint
    assert [(k["id"], k["token_hash"], k["token_ciphertext"], k["token_hint"], k["type"])
            for k in keys] == [
        (app_keys[0], api_token_hash("app-0"), "opaque", "app-...pp-0", "app"),
        (app_keys[1], api_token_hash("app-1"), "opaque", "app-...pp-1", "app")]
    assert "token" not in keys[0]
    found = await by_token("dataset-0")
    assert found is not None
    assert (found["id"], found["tenant_id"], found["app_id"], found["owner_id"]) == (
        dataset_key, world.tenant, None, owner)
    assert (found["token_ciphertext"], found["token_hint"]) == (None, "dataset-...et-0")

    await world.emit("ApiKey", app_keys[0], pev.ApiKeyRevoked())
    assert await by_token("app-0") is None
    assert [k["id"] for k in await pq.list_api_keys(world.engine, world.tenant, "app",
                                                    chat)] == [app_keys[1]]

    await world.emit("App", chat, pev.AppDeleted(deleted_by=owner))
    assert await pq.app_in_workspace(world.engine, world.tenant, chat) is None
    assert await by_token("app-1") is None  # its keys went with it
    assert await by_token("dataset-0") is not None
    assert await pq.app_in_workspace(world.engine, world.tenant, flow) is not None


# --- platform: model providers -----------------------------------------------------------------

OPENAI = "langgenius/openai/openai"
COMPATIBLE = "langgenius/openai_api_compatible/openai_api_compatible"
SECRET_KEY = "test-secret-key-which-is-long-enough-for-hs256"


def sealed_event(w: World, credentials: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Credentials sealed with the workspace's key, as the gateway seals them, and masked."""
    fields = (provider_spec(COMPATIBLE).model_fields  # type: ignore[union-attr]
              if "endpoint_url" in credentials
              else provider_spec(OPENAI).provider_fields)  # type: ignore[union-attr]
    return (seal(SECRET_KEY, credentials_purpose(w.tenant), json.dumps(credentials)),
            masked(credentials, fields))


@exercises(pev.ProviderCredentialsSaved, pev.ProviderCredentialsDeleted, pev.CustomModelSaved,
           pev.CustomModelDeleted, pev.DefaultModelSet)
async def test_model_providers_and_the_model_lookup(world: World) -> None:
    await setup(world)
    with pytest.raises(errors.ProviderNotInitialized):
        await pm.resolve_model(world.engine, SECRET_KEY, world.tenant, "llm")

    local = {"api_key": "sk-local-0123456789", "endpoint_url": "http://127.0.0.1:8000/v1",
             "mode": "chat", "context_size": "32768", "max_tokens_to_sample": "2048"}
    ciphertext, shown = sealed_event(world, local)
    assert shown["api_key"] == "sk-loc************89" and shown["context_size"] == "32768"
    await world.emit("Workspace", world.tenant, pev.CustomModelSaved(
        provider=COMPATIBLE, model="qwen2.5", model_type="llm",
        credentials_ciphertext=ciphertext, credentials_masked=shown), tenant_id=world.tenant)

    # no default set: the first available model of the type, as Dify picks it
    model = await pm.resolve_model(world.engine, SECRET_KEY, world.tenant, "llm")
    assert (model.provider, model.provider_kind, model.model, model.endpoint_url,
            model.api_key, model.context_size, model.mode, model.max_tokens) == (
        COMPATIBLE, "openai_api_compatible", "qwen2.5", "http://127.0.0.1:8000/v1",
        "sk-local-0123456789", 32768, "chat", 2048)
    assert "sk-local" not in repr(model)  # safe to log
    # another workspace's key does not open these credentials
    with pytest.raises(errors.ProviderNotInitialized):
        await pm.resolve_model(world.engine, "another-secret", world.tenant, "llm")

    openai_key = {"openai_api_key": "sk-openai-abcdefgh"}
    ciphertext, shown = sealed_event(world, openai_key)
    await world.emit("Workspace", world.tenant, pev.ProviderCredentialsSaved(
        provider=OPENAI, credentials_ciphertext=ciphertext, credentials_masked=shown),
        tenant_id=world.tenant)
    await world.emit("Workspace", world.tenant, pev.DefaultModelSet(
        model_type="llm", provider=OPENAI, model="gpt-4o-mini"), tenant_id=world.tenant)
    assert await pm.default_model(world.engine, world.tenant, "llm") == (OPENAI, "gpt-4o-mini")
    model = await pm.resolve_model(world.engine, SECRET_KEY, world.tenant, "llm")
    assert (model.provider_kind, model.model, model.endpoint_url, model.api_key,
            model.context_size) == ("openai", "gpt-4o-mini", "https://api.openai.com/v1",
                                    "sk-openai-abcdefgh", 128000)
    # a model named explicitly, in either form of the provider's name
    named = await pm.resolve_model(world.engine, SECRET_KEY, world.tenant, "llm",
                                   "openai_api_compatible", "qwen2.5")
    assert named.api_key == "sk-local-0123456789"

    listed = await pm.available_models(world.engine, world.tenant, "llm")
    assert [(m.provider, m.model, m.fetch_from) for m in listed][:2] == [
        (COMPATIBLE, "qwen2.5", "customizable-model"), (OPENAI, "gpt-4o", "predefined-model")]
    assert await pm.available_models(world.engine, world.tenant, "rerank") == []
    configured = await pm.configured_providers(world.engine, world.tenant)
    assert configured == {COMPATIBLE: True, OPENAI: {"openai_api_key": "sk-ope************gh"}}

    await world.emit("Workspace", world.tenant, pev.ProviderCredentialsDeleted(
        provider=OPENAI), tenant_id=world.tenant)
    # the default names a provider that is gone: no model, not a silent fallback
    with pytest.raises(errors.ProviderNotInitialized, match="gpt-4o-mini"):
        await pm.resolve_model(world.engine, SECRET_KEY, world.tenant, "llm")
    await world.emit("Workspace", world.tenant, pev.CustomModelDeleted(
        provider=COMPATIBLE, model="qwen2.5", model_type="llm"), tenant_id=world.tenant)
    assert await pm.available_models(world.engine, world.tenant) == []
    assert await pm.configured_providers(world.engine, world.tenant) == {}
