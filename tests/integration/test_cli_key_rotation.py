"""`eddy reset-encrypt-key-pair` on workspaces with provider credentials, API keys and
workflow secrets, against real Postgres and Redis: every secret is re-sealed with the
workspace's new key by a command, the old key is retired, and everything a user had keeps
working (chat through the provider, the API keys and the console showing them, the
credentials shown masked, a workflow's secret environment variable), also after the read
model is rebuilt from the store; an interrupted rotation resumes."""

from __future__ import annotations

import asyncio
import io
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.secrets import generation_of
from config import Settings
from projections.keyring import begin_rotation
from projections.platform.tables import api_keys, custom_models, provider_credentials
from projections.tables import workspace_keys
from projections.workflow.tables import workflow_drafts, workflow_versions
from schemas.base import CommandEnvelope
from schemas.platform.commands import CreateWorkspace
from schemas.platform.naming import account_id_for
from schemas.topics import COMMANDS, dead_letter_topic
from tests.chat import KEY, MODEL, PROVIDERS, Chat, app_with_key, chat_node
from tests.harness import (
    add_account_with_workspace,
    eventually,
    everything_recorded,
    running_node,
)
from tests.integration.test_cli_operations import eddy
from tests.workflows import edge, end_outputs, graph, graph_node, publish_in_console

SECRET = "sk-live-0123456789abcdef"
SAY_SECRET = graph([graph_node("start", "start", variables=[]),
                    graph_node("say", "answer", answer="{{#env.region#}} {{#env.api_key#}}"),
                    graph_node("end", "end", outputs=end_outputs(("said", ["say", "answer"])))],
                   [edge("start", "say"), edge("say", "end")])


async def _everything_works(chat: Chat, workflow_key: dict[str, str],
                            keys: dict[str, str], dataset_key: str) -> None:
    """What a user notices: a chat through the provider, the workflow using its secret,
    the console's keys (app and knowledge ones, which still authenticate) and credentials."""
    c = chat.node.client
    answer = await chat.send("Where is the old town?")
    assert answer.status_code == 200, answer.text
    assert answer.json()["answer"]
    run = await c.post("/v1/workflows/run", headers=workflow_key, json={
        "inputs": {}, "user": "ann", "response_mode": "blocking"})
    assert run.status_code == 200, run.text
    assert run.json()["data"]["outputs"] == {"said": "eu ******"}  # opened, then masked
    listed = await c.get(f"/console/api/apps/{chat.app_id}/api-keys", headers=chat.auth)
    assert {k["id"]: k["token"] for k in listed.json()["data"]} == keys
    shown = await c.get(f"{PROVIDERS}/openai_api_compatible/models/credentials",
                        headers=chat.auth, params={"model": MODEL, "model_type": "llm"})
    assert shown.status_code == 200, shown.text
    assert shown.json()["credentials"]["api_key"] == "sk-fak************89"
    openai = await c.get(f"{PROVIDERS}/openai/credentials", headers=chat.auth)
    assert openai.json()["credentials"] == {"openai_api_key": "sk-fak************89",
                                            "openai_api_base": chat.provider.base_url}
    listed = await c.get("/console/api/datasets/api-keys", headers=chat.auth)
    assert [k["token"] for k in listed.json()["data"]] == [dataset_key]
    datasets = await c.get("/v1/datasets", headers={"Authorization": f"Bearer {dataset_key}"})
    assert datasets.status_code == 200, datasets.text


async def _ciphertexts(chat: Chat) -> list[str]:
    """Every sealed secret of the read model."""
    async with chat.node.container.engine.connect() as conn:
        found = [*(await conn.execute(select(api_keys.c.token_ciphertext))).scalars(),
                 *(await conn.execute(select(custom_models.c.credentials_ciphertext))
                   ).scalars(),
                 *(await conn.execute(select(provider_credentials.c.credentials_ciphertext))
                   ).scalars()]
        for table in (workflow_drafts, workflow_versions):
            for variables in (await conn.execute(select(table.c.environment_variables))
                              ).scalars():
                found += [v["value"] for v in variables if v.get("value_type") == "secret"]
    return [c for c in found if c]


async def _key_states(engine: AsyncEngine) -> dict[UUID, dict[int, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(workspace_keys))).mappings().all()
    states: dict[UUID, dict[int, str]] = {}
    for row in rows:
        states.setdefault(row["tenant_id"], {})[row["generation"]] = row["state"]
        assert (row["sealed_key"] is None) == (row["state"] != "active")
    return states


async def test_every_secret_is_resealed_and_keeps_working(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async with chat_node(settings) as chat:
        node, c = chat.node, chat.node.client
        await chat.configure()
        flow_id, workflow_key = await app_with_key(node, chat.auth, mode="workflow",
                                                   name="Secretive")
        await publish_in_console(node, chat.auth, flow_id, SAY_SECRET,
                                 secrets={"api_key": SECRET},
                                 environment=[{"name": "region", "value": "eu",
                                               "value_type": "string"}])
        saved = await c.post(f"{PROVIDERS}/openai/credentials", headers=chat.auth, json={
            "credentials": {"openai_api_key": KEY, "openai_api_base": chat.provider.base_url}})
        assert saved.status_code == 201, saved.text
        dataset_key = (await c.post("/console/api/datasets/api-keys",
                                    headers=chat.auth)).json()["token"]
        second = await c.post(f"/console/api/apps/{chat.app_id}/api-keys", headers=chat.auth)
        listed = await c.get(f"/console/api/apps/{chat.app_id}/api-keys", headers=chat.auth)
        keys = {k["id"]: k["token"] for k in listed.json()["data"]}
        assert second.json()["token"] in keys.values() and len(keys) == 2
        await add_account_with_workspace(node, "rival@example.com")  # a workspace with none
        await _everything_works(chat, workflow_key, keys, dataset_key)
        before = await _ciphertexts(chat)
        assert len(before) == 8 and {generation_of(x) for x in before} == {0}

        # the confirmation Dify asks for: anything but yes changes nothing
        monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
        code, out, err = await eddy("reset-encrypt-key-pair")
        assert code == 1 and "Are you sure you want to reset encrypt key pair?" in out
        assert "Aborted!" in err and await _key_states(chat.node.container.engine) == {}

        code, out, err = await eddy("reset-encrypt-key-pair", "--yes")
        assert code == 0, err
        assert out.count("has been reset.") == 2
        assert "8 secret(s) re-sealed; the previous key is retired." in out
        assert "0 secret(s) re-sealed; the previous key is retired." in out
        states = await _key_states(chat.node.container.engine)
        assert sorted(states.values(), key=len) == [{0: "retired", 1: "active"}] * 2

        async def resealed() -> bool:
            return {generation_of(x) for x in await _ciphertexts(chat)} == {1}
        await eventually(resealed)
        await _everything_works(chat, workflow_key, keys, dataset_key)
        # the re-seal commands and events carried ciphertexts only
        plaintexts = [KEY, SECRET, dataset_key, *keys.values()]
        assert not [p for p in plaintexts for blob in await everything_recorded(node)
                    if p.encode() in blob]
        draft = await c.get(f"/console/api/apps/{flow_id}/export", headers=chat.auth,
                            params={"include_secret": "true"})
        assert SECRET in draft.json()["data"]

        # a read model rebuilt from the store: the re-seal events keep every secret readable
        code, _, err = await eddy("projections", "rebuild", "console", "--switch")
        assert code == 0, err
        await eventually(lambda: asyncio.sleep(
            0, node.container.read_models.active().schema == "console_v2"), timeout=10)
        await _everything_works(chat, workflow_key, keys, dataset_key)


async def test_an_interrupted_rotation_resumes_with_the_same_key(settings: Settings) -> None:
    async with chat_node(settings) as chat:
        node = chat.node
        listed = await node.client.get(f"/console/api/apps/{chat.app_id}/api-keys",
                                       headers=chat.auth)
        keys: dict[str, Any] = {k["id"]: k["token"] for k in listed.json()["data"]}
        (tenant,) = {t for t in await _tenants(chat)}
        # a run stopped after giving the workspace its new key, before re-sealing anything:
        # the old secrets still open, new ones are sealed with the new key
        assert await begin_rotation(node.container.engine, settings.SECRET_KEY, tenant) == 1
        answer = await chat.send("Still there?")
        assert answer.status_code == 200, answer.text
        # a dead-lettered command may carry a secret sealed with the old key (a replay would
        # record it): the old key is kept until it is settled, and the run says why
        await node.container.bus.publish(dead_letter_topic(COMMANDS), str(tenant), b"{}",
                                         {"dlq_group": "commands", "dlq_error": "boom"})
        code, _, err = await eddy("reset-encrypt-key-pair", "--yes")
        assert code == 1 and "1 dead-lettered command(s) on commands.dlq" in err
        assert (await _key_states(node.container.engine))[tenant][0] != "retired"
        code, _, err = await eddy("dlq", "drop", COMMANDS, "--all", "--reason", "test")
        assert code == 0, err
        code, out, err = await eddy("reset-encrypt-key-pair", "--yes")
        assert code == 0, err
        assert "with key generation 1." in out
        assert (await _key_states(node.container.engine))[tenant] == {0: "retired", 1: "active"}
        listed = await node.client.get(f"/console/api/apps/{chat.app_id}/api-keys",
                                       headers=chat.auth)
        assert {k["id"]: k["token"] for k in listed.json()["data"]} == keys
        # run again: a new rotation, to the next generation
        code, out, err = await eddy("reset-encrypt-key-pair", "--yes")
        assert code == 0 and "with key generation 2." in out, err
        assert (await _key_states(node.container.engine))[tenant] == {
            0: "retired", 1: "retired", 2: "active"}
        answer = await chat.send("And now?")
        assert answer.status_code == 200, answer.text


async def test_the_old_key_stays_while_commands_wait_to_be_recorded(
        settings: Settings) -> None:
    owner = account_id_for("owner@example.com")
    async with running_node(settings) as node:
        await node.setup_and_login()
    # the commands group is stopped with a command sent before the rotation still queued (a
    # gateway's SaveProviderCredentials, say: its secret sealed with the old key)
    queued = CommandEnvelope.of(
        CreateWorkspace(workspace_id=uuid4(), name="Second", owner_account_id=owner),
        aggregate_id=owner, tenant_id=None, actor_id=owner, correlation_id=uuid4())
    async with running_node(settings, roles=[]) as node:
        await node.container.bus.publish(COMMANDS, str(owner), queued.to_json(),
                                         {"command_type": queued.type})
        code, _, err = await eddy("reset-encrypt-key-pair", "--yes")
        assert code == 1 and "the commands group has not handled every command yet" in err
        assert "it resumes this rotation" in err
        states = await _key_states(node.container.engine)
        assert states and all("retired" not in s.values() for s in states.values())
    # the group runs again and records it: the re-run resumes and retires the old keys
    async with running_node(settings) as node:
        async def recorded() -> bool:
            state = await node.container.bus.group_state("commands", [COMMANDS])
            return state.oldest_unacked is None
        await eventually(recorded)
        code, out, err = await eddy("reset-encrypt-key-pair", "--yes")
        assert code == 0 and "with key generation 1." in out, err
        states = await _key_states(node.container.engine)
        assert len(states) == 2 and all(s == {0: "retired", 1: "active"}
                                        for s in states.values())


async def _tenants(chat: Chat) -> set[UUID]:
    async with chat.node.container.engine.connect() as conn:
        return set((await conn.execute(select(api_keys.c.tenant_id))).scalars())
