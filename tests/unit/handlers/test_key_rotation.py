"""The re-seal commands of `eddy reset-encrypt-key-pair`: the same secret sealed with the
workspace's new key replaces the stored ciphertext it names, and nothing else: a secret
saved again meanwhile, another workspace's, a revoked key or a changed variable are refused."""

from __future__ import annotations

from uuid import uuid4

from schemas import errors
from schemas.platform import commands as pc
from schemas.platform import events as pe
from schemas.workflow import commands as wc
from schemas.workflow import events as we
from schemas.workflow.naming import workflow_draft_id_for
from tests.unit.handlers.harness import World, accepted, covers, rejected, unchanged

OPENAI = "langgenius/openai/openai"
COMPATIBLE = "langgenius/openai_api_compatible/openai_api_compatible"


def sealed(ciphertext: str) -> pc.SealedCredentials:
    return pc.SealedCredentials(ciphertext=ciphertext, masked={"api_key": "sk-***"})


@covers(pc.ResealProviderCredentials)
def test_provider_and_custom_model_credentials_are_resealed(world: World) -> None:
    workspace = world.workspace()
    world.given(pc.SaveProviderCredentials(workspace_id=workspace, provider=OPENAI,
                                           credentials=sealed("old-1")))
    world.given(pc.SaveCustomModel(workspace_id=workspace, provider=COMPATIBLE, model="qwen",
                                   model_type="llm", credentials=sealed("old-2")))
    provider = accepted(world.run(pc.ResealProviderCredentials(
        workspace_id=workspace, provider=OPENAI,
        credentials=pc.Resealed(previous="old-1", ciphertext="k1:new-1"))))
    assert provider.one(pe.ProviderCredentialsResealed) == pe.ProviderCredentialsResealed(
        provider=OPENAI, credentials_ciphertext="k1:new-1")
    model = accepted(world.run(pc.ResealProviderCredentials(
        workspace_id=workspace, provider=COMPATIBLE, model="qwen", model_type="llm",
        credentials=pc.Resealed(previous="old-2", ciphertext="k1:new-2"))))
    assert model.one(pe.ProviderCredentialsResealed).model == "qwen"
    # naming what is no longer stored: refused (the rotation reads it again)
    rejected(world.run(pc.ResealProviderCredentials(
        workspace_id=workspace, provider=OPENAI,
        credentials=pc.Resealed(previous="old-1", ciphertext="k1:other"))),
        errors.SecretChanged)
    unchanged(world.run(pc.ResealProviderCredentials(
        workspace_id=workspace, provider=OPENAI,
        credentials=pc.Resealed(previous="k1:new-1", ciphertext="k1:new-1"))))
    world.workspace(world.rival)
    rejected(world.run(pc.ResealProviderCredentials(
        workspace_id=workspace, provider=OPENAI,
        credentials=pc.Resealed(previous="k1:new-1", ciphertext="k2:x")), as_=world.rival),
        errors.NotFound, "Workspace not found.")


@covers(pc.ResealApiKeyToken)
def test_an_api_token_is_resealed_while_its_key_lives(world: World) -> None:
    key_id = uuid4()
    world.given(pc.CreateApiKey(key_id=key_id, key_type="dataset", token=pc.SealedToken(
        sha256="a" * 64, ciphertext="old", hint="dataset-...abcd")))
    resealed = accepted(world.run(pc.ResealApiKeyToken(
        key_id=key_id, token=pc.Resealed(previous="old", ciphertext="k1:new"))))
    assert resealed.one(pe.ApiKeyTokenResealed) == pe.ApiKeyTokenResealed(
        token_ciphertext="k1:new")
    rejected(world.run(pc.ResealApiKeyToken(
        key_id=key_id, token=pc.Resealed(previous="old", ciphertext="k1:x"))),
        errors.SecretChanged)
    rejected(world.run(pc.ResealApiKeyToken(
        key_id=key_id, token=pc.Resealed(previous="k1:new", ciphertext="k2:x")),
        as_=world.rival), errors.ApiKeyNotFound)
    world.given(pc.RevokeApiKey(key_id=key_id, key_type="dataset", app_id=None))
    rejected(world.run(pc.ResealApiKeyToken(
        key_id=key_id, token=pc.Resealed(previous="k1:new", ciphertext="k2:x"))),
        errors.ApiKeyNotFound)


@covers(wc.ResealWorkflowEnvironment)
def test_a_draft_and_a_version_have_only_their_secrets_resealed(world: World) -> None:
    app_id, version_id = uuid4(), uuid4()
    world.given(pc.CreateApp(app_id=app_id, name="Flow", mode="workflow"))
    stored = [{"id": "v1", "name": "api_key", "value_type": "secret", "value": "old"},
              {"id": "v2", "name": "region", "value_type": "string", "value": "eu"}]
    world.given(wc.SyncWorkflowDraft(app_id=app_id, graph={"nodes": [], "edges": []},
                                     features={}, environment_variables=stored,
                                     conversation_variables=[]))
    world.given(wc.PublishWorkflow(app_id=app_id, workflow_id=version_id, version="1"))
    new = [{**stored[0], "value": "k1:new"}, stored[1]]
    draft_id = workflow_draft_id_for(app_id)
    for of, target in (("draft", draft_id), ("version", version_id)):
        done = accepted(world.run(wc.ResealWorkflowEnvironment(
            aggregate_id=target, of=of, previous=stored, environment_variables=new)))
        assert done.one(we.WorkflowEnvironmentResealed).environment_variables == new
        assert done.event(we.WorkflowEnvironmentResealed).aggregate_id == target
    # the draft as read before is no longer the stored one; a plain value may not change
    rejected(world.run(wc.ResealWorkflowEnvironment(
        aggregate_id=draft_id, of="draft", previous=stored, environment_variables=new)),
        errors.SecretChanged)
    rejected(world.run(wc.ResealWorkflowEnvironment(
        aggregate_id=draft_id, of="draft", previous=new,
        environment_variables=[new[0], {**stored[1], "value": "us"}])), errors.BadRequest,
        "A re-seal changes nothing but how secret values are sealed.")
    rejected(world.run(wc.ResealWorkflowEnvironment(
        aggregate_id=version_id, of="version", previous=new, environment_variables=new),
        as_=world.rival), errors.NotFound, "Workflow not found.")
