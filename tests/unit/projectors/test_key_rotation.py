"""Projectors of the re-seal events (`eddy reset-encrypt-key-pair`): the read model holds
the new ciphertexts, which open with the workspace's new key once the old one is retired."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
from sqlalchemy import insert

from adapters.secrets import Keyring, new_key_material, seal_key_material
from projections.platform import models as pm
from projections.platform import queries as pq
from projections.platform.tables import api_keys
from projections.tables import workspace_keys
from projections.workflow import queries as wq
from schemas import errors
from schemas.platform import events as pev
from schemas.platform.providers import credentials_purpose
from schemas.workflow import events as wev
from tests.unit.projectors.harness import T0, World, exercises

SECRET_KEY = "unit-secret-key"
COMPATIBLE = "langgenius/openai_api_compatible/openai_api_compatible"


@exercises(pev.ProviderCredentialsResealed, pev.ApiKeyTokenResealed)
async def test_resealed_credentials_and_tokens_open_with_the_new_key(world: World) -> None:
    purpose = credentials_purpose(world.tenant)
    old, material = Keyring(SECRET_KEY), new_key_material()
    new = Keyring(SECRET_KEY, active=1, materials={1: material}, retired=frozenset({0}))
    plain = json.dumps({"api_key": "sk-1"})
    await world.emit("Workspace", world.tenant, pev.CustomModelSaved(
        provider=COMPATIBLE, model="qwen", model_type="llm",
        credentials_ciphertext=old.seal(purpose, plain), credentials_masked={}))
    key_id = uuid4()
    await world.emit("ApiKey", key_id, pev.ApiKeyCreated(
        key_type="dataset", app_id=None, token_hash="a" * 64,
        token_ciphertext=old.seal("api token display", "dataset-1"), token_hint="h"))

    await world.emit("Workspace", world.tenant, pev.ProviderCredentialsResealed(
        provider=COMPATIBLE, model="qwen", model_type="llm",
        credentials_ciphertext=new.seal(purpose, plain)))
    await world.emit("ApiKey", key_id, pev.ApiKeyTokenResealed(
        token_ciphertext=new.seal("api token display", "dataset-1")))
    async with world.engine.begin() as conn:  # the rotation retired generation 0
        await conn.execute(insert(workspace_keys), [
            {"tenant_id": world.tenant, "generation": 0, "sealed_key": None,
             "state": "retired", "created_at": T0},
            {"tenant_id": world.tenant, "generation": 1, "state": "active", "created_at": T0,
             "sealed_key": seal_key_material(SECRET_KEY, material)}])

    assert await pm.stored_credentials(world.engine, SECRET_KEY, world.tenant, COMPATIBLE,
                                       "qwen", "llm") == {"api_key": "sk-1"}
    (row,) = await pq.list_api_keys(world.engine, world.tenant, "dataset", None)
    assert new.unseal("api token display", row["token_ciphertext"]) == "dataset-1"
    assert (await world.one(api_keys, key_id))["token_hint"] == "h"


@exercises(wev.WorkflowEnvironmentResealed)
async def test_a_draft_and_a_version_hold_their_resealed_environment(world: World) -> None:
    app_id, draft_id, version_id = uuid4(), uuid4(), uuid4()
    stored = [{"id": "v1", "name": "k", "value_type": "secret", "value": "old"}]
    resealed = [{**stored[0], "value": "k1:new"}]
    await world.emit("WorkflowDraft", draft_id, wev.WorkflowDraftSynced(
        app_id=app_id, graph={}, features={}, environment_variables=stored,
        conversation_variables=[], hash="h", synced_by=world.actor))
    await world.emit("WorkflowVersion", version_id, wev.WorkflowVersionCreated(
        app_id=app_id, kind="workflow", version="1", graph={}, features={},
        environment_variables=stored, conversation_variables=[], created_by=world.actor))
    for kind, target in (("WorkflowDraft", draft_id), ("WorkflowVersion", version_id)):
        await world.emit(kind, target, wev.WorkflowEnvironmentResealed(
            environment_variables=resealed))

    draft = await wq.workflow_draft(world.engine, app_id)
    assert draft is not None and draft["environment_variables"] == resealed
    assert draft["hash"] == "h"  # the editor's next save still starts from it
    version = await wq.workflow_version(world.engine, app_id, version_id)
    assert version is not None and version["environment_variables"] == resealed


async def test_a_key_sealed_under_another_secret_key_leaves_its_secrets_unopened(
        world: World) -> None:
    """SECRET_KEY changed after a rotation: the workspace's key does not open, so neither
    do its secrets, which read as Dify's "provider not initialised", never as a crash."""
    material = new_key_material()
    rotated = Keyring(SECRET_KEY, active=1, materials={1: material})
    await world.emit("Workspace", world.tenant, pev.CustomModelSaved(
        provider=COMPATIBLE, model="qwen", model_type="llm", credentials_masked={},
        credentials_ciphertext=rotated.seal(credentials_purpose(world.tenant), "{}")))
    async with world.engine.begin() as conn:
        await conn.execute(insert(workspace_keys).values(
            tenant_id=world.tenant, generation=1, state="active", created_at=T0,
            sealed_key=seal_key_material("another-secret-key", material)))
    with pytest.raises(errors.ProviderNotInitialized):
        await pm.stored_credentials(world.engine, SECRET_KEY, world.tenant, COMPATIBLE,
                                    "qwen", "llm")
