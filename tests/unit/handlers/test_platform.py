"""The platform context's command handlers: setup, apps, API keys, model providers, account
flows."""

from __future__ import annotations

from uuid import uuid4

from schemas import errors
from schemas.mail import events as me
from schemas.platform import commands as pc
from schemas.platform import events as pe
from schemas.platform.naming import account_id_for, api_token_hash, api_token_hint
from tests.unit.handlers.harness import (
    Workspace,
    World,
    accepted,
    covers,
    rejected,
    unchanged,
)

# =========================================================================================
# platform: setup
# =========================================================================================


@covers(pc.SetupPlatform)
def test_setup_registers_the_owner_and_their_workspace_once(world: World) -> None:
    account_id, workspace_id, credentials_id = uuid4(), uuid4(), uuid4()
    setup = accepted(world.run(pc.SetupPlatform(
        account_id=account_id, workspace_id=workspace_id, email="owner@example.com",
        name="Owner", credentials_id=credentials_id, interface_language="de-DE")),
        account_id=str(account_id), workspace_id=str(workspace_id))
    assert setup.types == ["SetupCompleted", "AccountRegistered", "WorkspaceCreated"]
    assert setup.one(pe.SetupCompleted) == pe.SetupCompleted(account_id=account_id,
                                                             workspace_id=workspace_id)
    account = setup.one(pe.AccountRegistered)
    assert account == pe.AccountRegistered(email="owner@example.com", name="Owner",
                                           credentials_id=credentials_id,
                                           interface_language="de-DE")
    assert setup.event(pe.AccountRegistered).aggregate_id == account_id
    workspace = setup.event(pe.WorkspaceCreated)
    assert workspace.aggregate_id == workspace.tenant_id == workspace_id
    assert setup.one(pe.WorkspaceCreated) == pe.WorkspaceCreated(
        name="Owner's Workspace", owner_account_id=account_id)

    again = world.run(pc.SetupPlatform(
        account_id=uuid4(), workspace_id=uuid4(), email="intruder@example.com",
        name="Intruder", credentials_id=uuid4()))
    rejected(again, errors.AlreadySetup)
    assert again.outcome.error is not None and again.outcome.error["status"] == 403


@covers(pc.CreateWorkspace)
def test_create_workspace_registers_a_new_owner_or_gives_an_existing_one_another(
        world: World) -> None:
    owner, first, second, credentials = uuid4(), uuid4(), uuid4(), uuid4()
    created = accepted(world.run(pc.CreateWorkspace(
        workspace_id=first, name="Acme", owner_account_id=owner,
        new_owner=pc.NewAccount(email="ops@acme.test", name="ops", credentials_id=credentials))),
        workspace_id=str(first), account_id=str(owner))
    assert created.types == ["AccountRegistered", "WorkspaceCreated"]
    assert created.event(pe.WorkspaceCreated).tenant_id == first
    assert created.one(pe.WorkspaceCreated) == pe.WorkspaceCreated(name="Acme",
                                                                   owner_account_id=owner)
    another = accepted(world.run(pc.CreateWorkspace(
        workspace_id=second, name="Acme Labs", owner_account_id=owner)),
        workspace_id=str(second), account_id=str(owner))
    assert another.types == ["WorkspaceCreated"]

    rejected(world.run(pc.CreateWorkspace(
        workspace_id=uuid4(), name="Nobody's", owner_account_id=uuid4())), errors.NotFound,
        "Account not found.")
    rejected(world.run(pc.CreateWorkspace(
        workspace_id=first, name="Again", owner_account_id=owner)), errors.BadRequest,
        "Workspace already exists.")


# =========================================================================================
# platform: apps
# =========================================================================================


@covers(pc.CreateApp)
def test_create_app(world: World) -> None:
    app_id = uuid4()
    created = accepted(world.run(pc.CreateApp(app_id=app_id, name="Support bot",
                                              mode="advanced-chat", icon="🦜")),
                       app_id=str(app_id))
    assert created.types == ["AppCreated"]
    assert created.outcome.aggregate_version == 1 and created.outcome.position is not None
    event = created.event(pe.AppCreated)
    assert event.aggregate_id == app_id and event.tenant_id == world.me.tenant_id
    assert created.one(pe.AppCreated) == pe.AppCreated(
        name="Support bot", mode="advanced-chat", icon="🦜", created_by=world.me.actor_id)

    rejected(world.run(pc.CreateApp(app_id=app_id, name="Again", mode="chat")),
             errors.BadRequest, "App already exists.")


@covers(pc.UpdateApp)
def test_update_app(world: World) -> None:
    app_id = world.app("Helper")
    renamed = accepted(world.run(pc.UpdateApp(app_id=app_id, name="Helper 2", icon="🐙")),
                       app_id=str(app_id))
    assert renamed.one(pe.AppUpdated) == pe.AppUpdated(
        name="Helper 2", description="", icon_type="emoji", icon="🐙",
        icon_background="#FFEAD5", updated_by=world.me.actor_id)
    assert renamed.outcome.aggregate_version == 2

    unchanged(world.run(pc.UpdateApp(app_id=app_id, name="Helper 2")))
    unchanged(world.run(pc.UpdateApp(app_id=app_id)))

    rejected(world.run(pc.UpdateApp(app_id=app_id, name="Mine now"), as_=world.rival),
             errors.AppNotFound)
    rejected(world.run(pc.UpdateApp(app_id=uuid4(), name="x")), errors.AppNotFound)
    rejected(world.run(pc.UpdateApp(app_id=world.dataset(), name="x")), errors.AppNotFound)
    world.given(pc.DeleteApp(app_id=app_id))
    rejected(world.run(pc.UpdateApp(app_id=app_id, name="x")), errors.AppNotFound)


@covers(pc.DeleteApp)
def test_delete_app(world: World) -> None:
    app_id = world.app()
    rejected(world.run(pc.DeleteApp(app_id=app_id), as_=world.rival), errors.AppNotFound)
    deleted = accepted(world.run(pc.DeleteApp(app_id=app_id)), app_id=str(app_id))
    assert deleted.one(pe.AppDeleted) == pe.AppDeleted(deleted_by=world.me.actor_id)
    rejected(world.run(pc.DeleteApp(app_id=app_id)), errors.AppNotFound)
    rejected(world.run(pc.DeleteApp(app_id=world.tag("not an app"))), errors.AppNotFound)


# =========================================================================================
# platform: API keys
# =========================================================================================


def sealed(token: str) -> pc.SealedToken:
    """A token as the gateway sends it (the ciphertext's content is the gateway's business)."""
    return pc.SealedToken(sha256=api_token_hash(token), ciphertext=f"opaque:{len(token)}",
                          hint=api_token_hint(token))


@covers(pc.CreateApiKey)
def test_create_api_key(world: World) -> None:
    key_id = uuid4()
    created = accepted(world.run(pc.CreateApiKey(key_id=key_id, key_type="dataset",
                                                 token=sealed("dataset-abcdefgh"))),
                       key_id=str(key_id))
    # The command carried no token, and the event carries none: hash, ciphertext, hint.
    assert created.one(pe.ApiKeyCreated) == pe.ApiKeyCreated(
        key_type="dataset", app_id=None, token_hash=api_token_hash("dataset-abcdefgh"),
        token_ciphertext="opaque:16", token_hint="dataset-...efgh")
    assert created.event(pe.ApiKeyCreated).tenant_id == world.me.tenant_id

    app_id = world.app()
    app_key = accepted(world.run(pc.CreateApiKey(key_id=uuid4(), key_type="app",
                                                 app_id=app_id, token=sealed("app-abc"))))
    assert app_key.one(pe.ApiKeyCreated).app_id == app_id

    rejected(world.run(pc.CreateApiKey(key_id=key_id, key_type="dataset",
                                       token=sealed("again"))),
             errors.BadRequest, "API key already exists.")
    rival_app = world.app(as_=world.rival)
    rejected(world.run(pc.CreateApiKey(key_id=uuid4(), key_type="app", app_id=rival_app,
                                       token=sealed("app-x"))), errors.AppNotFound)
    rejected(world.run(pc.CreateApiKey(key_id=uuid4(), key_type="app",
                                       app_id=world.dataset(), token=sealed("app-y"))),
             errors.AppNotFound)
    world.given(pc.DeleteApp(app_id=app_id))
    rejected(world.run(pc.CreateApiKey(key_id=uuid4(), key_type="app", app_id=app_id,
                                       token=sealed("app-z"))), errors.AppNotFound)


@covers(pc.RevokeApiKey)
def test_revoke_api_key(world: World) -> None:
    app_id = world.app()
    key_id = uuid4()
    world.given(pc.CreateApiKey(key_id=key_id, key_type="app", app_id=app_id,
                                token=sealed("app-k")))

    # The key must be named as what it is: its type and its app.
    rejected(world.run(pc.RevokeApiKey(key_id=key_id, key_type="dataset")),
             errors.ApiKeyNotFound)
    rejected(world.run(pc.RevokeApiKey(key_id=key_id, key_type="app", app_id=world.app())),
             errors.ApiKeyNotFound)
    rejected(world.run(pc.RevokeApiKey(key_id=key_id, key_type="app", app_id=app_id),
                       as_=world.rival), errors.AppNotFound)
    dataset_key = uuid4()
    world.given(pc.CreateApiKey(key_id=dataset_key, key_type="dataset", token=sealed("ds-k")))
    rejected(world.run(pc.RevokeApiKey(key_id=dataset_key, key_type="dataset"),
                       as_=world.rival), errors.ApiKeyNotFound)
    rejected(world.run(pc.RevokeApiKey(key_id=app_id, key_type="dataset")),
             errors.ApiKeyNotFound)

    revoked = accepted(world.run(pc.RevokeApiKey(key_id=key_id, key_type="app",
                                                 app_id=app_id)), key_id=str(key_id))
    assert revoked.types == ["ApiKeyRevoked"]
    assert revoked.event(pe.ApiKeyRevoked).aggregate_id == key_id
    rejected(world.run(pc.RevokeApiKey(key_id=key_id, key_type="app", app_id=app_id)),
             errors.ApiKeyNotFound)
    accepted(world.run(pc.RevokeApiKey(key_id=dataset_key, key_type="dataset")))


# =========================================================================================
# platform: model providers (workspace settings)
# =========================================================================================

OPENAI = "langgenius/openai/openai"
COMPATIBLE = "langgenius/openai_api_compatible/openai_api_compatible"


def credentials(masked_key: str = "sk-abc************yz") -> pc.SealedCredentials:
    """Credentials as the gateway sends them: sealed (opaque here) and masked."""
    return pc.SealedCredentials(ciphertext="opaque-ciphertext",
                                masked={"api_key": masked_key, "endpoint_url": "http://llm"})


@covers(pc.SaveProviderCredentials)
def test_save_provider_credentials(world: World) -> None:
    workspace = world.workspace()
    saved = accepted(world.run(pc.SaveProviderCredentials(
        workspace_id=workspace, provider=OPENAI, credentials=credentials())),
        result="success")
    assert saved.one(pe.ProviderCredentialsSaved) == pe.ProviderCredentialsSaved(
        provider=OPENAI, credentials_ciphertext="opaque-ciphertext",
        credentials_masked={"api_key": "sk-abc************yz", "endpoint_url": "http://llm"})
    event = saved.event(pe.ProviderCredentialsSaved)
    assert event.aggregate_id == event.tenant_id == workspace
    # a customizable-model provider has no provider credentials; bare names are the
    # gateway's business (it canonicalises), unknown ones are refused
    rejected(world.run(pc.SaveProviderCredentials(
        workspace_id=workspace, provider=COMPATIBLE, credentials=credentials())),
        errors.BadRequest, f"Provider {COMPATIBLE} does not support predefined-model.")
    rejected(world.run(pc.SaveProviderCredentials(
        workspace_id=workspace, provider="openai", credentials=credentials())),
        errors.BadRequest, "Provider openai does not exist.")
    # another workspace's settings are not reachable
    world.workspace(world.rival)
    rejected(world.run(pc.SaveProviderCredentials(
        workspace_id=workspace, provider=OPENAI, credentials=credentials()), as_=world.rival),
        errors.NotFound, "Workspace not found.")


@covers(pc.DeleteProviderCredentials)
def test_delete_provider_credentials(world: World) -> None:
    workspace = world.workspace()
    unchanged(world.run(pc.DeleteProviderCredentials(workspace_id=workspace,
                                                     provider=OPENAI)))
    world.given(pc.SaveProviderCredentials(workspace_id=workspace, provider=OPENAI,
                                           credentials=credentials()))
    deleted = accepted(world.run(pc.DeleteProviderCredentials(workspace_id=workspace,
                                                              provider=OPENAI)))
    assert deleted.one(pe.ProviderCredentialsDeleted).provider == OPENAI
    # without credentials, openai's models are no longer a valid default
    rejected(world.run(pc.SetDefaultModels(workspace_id=workspace, settings=[
        pc.DefaultModel(model_type="llm", provider=OPENAI, model="gpt-4o")])),
        errors.BadRequest,
        f"Model gpt-4o (llm) of provider {OPENAI} is not configured in this workspace.")


@covers(pc.SaveCustomModel)
def test_save_custom_model(world: World) -> None:
    workspace = world.workspace()
    saved = accepted(world.run(pc.SaveCustomModel(
        workspace_id=workspace, provider=COMPATIBLE, model="qwen2.5", model_type="llm",
        credentials=credentials())))
    assert saved.one(pe.CustomModelSaved) == pe.CustomModelSaved(
        provider=COMPATIBLE, model="qwen2.5", model_type="llm",
        credentials_ciphertext="opaque-ciphertext",
        credentials_masked={"api_key": "sk-abc************yz", "endpoint_url": "http://llm"})
    # saved again (new key): a new event, the latest wins in the read model
    again = accepted(world.run(pc.SaveCustomModel(
        workspace_id=workspace, provider=COMPATIBLE, model="qwen2.5", model_type="llm",
        credentials=credentials("sk-new************zz"))))
    assert again.one(pe.CustomModelSaved).credentials_masked["api_key"] == "sk-new************zz"
    rejected(world.run(pc.SaveCustomModel(
        workspace_id=workspace, provider=OPENAI, model="gpt-x", model_type="llm",
        credentials=credentials())),
        errors.BadRequest, f"Provider {OPENAI} does not support customizable-model.")
    rejected(world.run(pc.SaveCustomModel(
        workspace_id=uuid4(), provider=COMPATIBLE, model="m", model_type="llm",
        credentials=credentials())), errors.NotFound, "Workspace not found.")


@covers(pc.DeleteCustomModel)
def test_delete_custom_model(world: World) -> None:
    workspace = world.workspace()
    world.given(pc.SaveCustomModel(workspace_id=workspace, provider=COMPATIBLE,
                                   model="bge-m3", model_type="text-embedding",
                                   credentials=credentials()))
    # the same name as another type is another model
    unchanged(world.run(pc.DeleteCustomModel(workspace_id=workspace, provider=COMPATIBLE,
                                             model="bge-m3", model_type="rerank")))
    deleted = accepted(world.run(pc.DeleteCustomModel(
        workspace_id=workspace, provider=COMPATIBLE, model="bge-m3",
        model_type="text-embedding")))
    assert deleted.one(pe.CustomModelDeleted) == pe.CustomModelDeleted(
        provider=COMPATIBLE, model="bge-m3", model_type="text-embedding")
    unchanged(world.run(pc.DeleteCustomModel(workspace_id=workspace, provider=COMPATIBLE,
                                             model="bge-m3", model_type="text-embedding")))


@covers(pc.SetDefaultModels)
def test_set_default_models(world: World) -> None:
    workspace = world.workspace()
    world.given(pc.SaveCustomModel(workspace_id=workspace, provider=COMPATIBLE,
                                   model="qwen2.5", model_type="llm",
                                   credentials=credentials()))
    world.given(pc.SaveProviderCredentials(workspace_id=workspace, provider=OPENAI,
                                           credentials=credentials()))
    both = [pc.DefaultModel(model_type="llm", provider=COMPATIBLE, model="qwen2.5"),
            pc.DefaultModel(model_type="text-embedding", provider=OPENAI,
                            model="text-embedding-3-small")]
    ran = accepted(world.run(pc.SetDefaultModels(workspace_id=workspace, settings=both)))
    assert [(p.model_type, p.provider, p.model) for p in (
        e.payload for e in ran.events if isinstance(e.payload, pe.DefaultModelSet))] == [
        ("llm", COMPATIBLE, "qwen2.5"), ("text-embedding", OPENAI, "text-embedding-3-small")]
    unchanged(world.run(pc.SetDefaultModels(workspace_id=workspace, settings=both)))
    # one unknown model refuses the whole request: nothing recorded
    rejected(world.run(pc.SetDefaultModels(workspace_id=workspace, settings=[
        pc.DefaultModel(model_type="llm", provider=OPENAI, model="gpt-4o"),
        pc.DefaultModel(model_type="rerank", provider=COMPATIBLE, model="nope")])),
        errors.BadRequest,
        f"Model nope (rerank) of provider {COMPATIBLE} is not configured in this workspace.")
    # openai has no rerank models, whatever its credentials
    rejected(world.run(pc.SetDefaultModels(workspace_id=workspace, settings=[
        pc.DefaultModel(model_type="rerank", provider=OPENAI, model="any")])),
        errors.BadRequest,
        f"Model any (rerank) of provider {OPENAI} is not configured in this workspace.")


# =========================================================================================
# platform: account flows (forgot password, e-mail code login, password change)
# =========================================================================================


@covers(pc.RequestPasswordReset, pc.RequestEmailCodeLogin)
def test_a_code_request_mails_the_account_its_sealed_code_and_records_no_code(
        world: World) -> None:
    owner = uuid4()
    world.given(pc.CreateWorkspace(
        workspace_id=uuid4(), name="Acme", owner_account_id=owner,
        new_owner=pc.NewAccount(email="ops@acme.test", name="ops", credentials_id=uuid4())))
    for command, template, requested in (
            (pc.RequestPasswordReset, "reset_password", pe.PasswordResetRequested),
            (pc.RequestEmailCodeLogin, "email_code_login", pe.EmailCodeLoginRequested)):
        ran = accepted(world.run(command(account_id=owner, language="zh-Hans",
                                         sealed_params="sealed-code", expiry_minutes=5)))
        assert sorted(ran.types) == sorted(["MailRequested", requested.event_type])
        mail = ran.one(me.MailRequested)
        assert mail == me.MailRequested(template=template, to="ops@acme.test",
                                        language="zh-Hans", params={"expiry_minutes": 5},
                                        sealed_params="sealed-code")
        mail_id = ran.event(me.MailRequested).aggregate_id
        assert ran.one(requested) == requested(mail_id=mail_id)
        assert ran.outcome.result == {"mail_id": str(mail_id)}

        # No such account: no mail asked for.
        rejected(world.run(command(account_id=uuid4(), language="en-US",
                                   sealed_params="sealed-code", expiry_minutes=5)),
                 errors.AccountNotFound)


@covers(pc.ChangePassword)
def test_a_password_change_names_the_new_credentials_of_an_existing_account(
        world: World) -> None:
    owner, credentials = uuid4(), uuid4()
    world.given(pc.CreateWorkspace(
        workspace_id=uuid4(), name="Acme", owner_account_id=owner,
        new_owner=pc.NewAccount(email="ops@acme.test", name="ops", credentials_id=uuid4())))
    changed = accepted(world.run(pc.ChangePassword(account_id=owner,
                                                   credentials_id=credentials)),
                       account_id=str(owner))
    assert changed.one(pe.AccountPasswordChanged) == pe.AccountPasswordChanged(
        credentials_id=credentials)
    assert changed.event(pe.AccountPasswordChanged).aggregate_id == owner
    rejected(world.run(pc.ChangePassword(account_id=uuid4(), credentials_id=uuid4())),
             errors.AccountNotFound)


@covers(pc.RequestPasswordReset, pc.RequestEmailCodeLogin, pc.ChangePassword)
def test_an_invited_account_gets_no_code_nor_password_before_it_activates(
        world: World) -> None:
    owner, team = uuid4(), uuid4()
    world.given(pc.CreateWorkspace(
        workspace_id=team, name="Acme", owner_account_id=owner,
        new_owner=pc.NewAccount(email="ops@acme.test", name="ops", credentials_id=uuid4())))
    world.given(pc.InviteMember(workspace_id=team, email="new@acme.test", role="editor",
                                sealed_activation="sealed-link", signin_url="http://signin"),
                as_=Workspace(team, owner))
    invited = account_id_for("new@acme.test")
    for command in (pc.RequestPasswordReset, pc.RequestEmailCodeLogin):
        rejected(world.run(command(account_id=invited, language="en-US",
                                   sealed_params="sealed-code", expiry_minutes=5)),
                 errors.AccountNotFound)
    rejected(world.run(pc.ChangePassword(account_id=invited, credentials_id=uuid4())),
             errors.AccountNotFound)
