"""Every command handler of every context, in process (InMemoryEventStore, no servers).

Each command is run the way a command worker runs it (`execute` on a command envelope) and
checked for what a user would notice: the outcome and its result, the events recorded, and
the typed rejection (Dify's error code and HTTP status) for the important bad cases:
another workspace's ids, ids of another kind of aggregate, duplicates, invalid states.

A test declares the command types it exercises with `@covers(...)`; the `world` fixture
fails the test if it did not run them, and the last test fails for a registered command
type that no test covers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from bootstrap import ASSEMBLY
from commands.aggregate import Context
from commands.executor import execute
from commands.knowledge.aggregates import Document, Segment
from commands.platform.aggregates import Workspace as WorkspaceAggregate
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from events.memory_store import InMemoryEventStore
from events.store import CommandOutcome
from schemas import errors
from schemas.base import CommandEnvelope, CommandPayload, EventPayload
from schemas.conversation import commands as cc
from schemas.conversation import events as ce
from schemas.conversation.naming import (
    annotation_set_id_for,
    app_config_id_for,
    end_user_id_for,
)
from schemas.knowledge import commands as kc
from schemas.knowledge import events as ke
from schemas.knowledge.naming import (
    HIERARCHICAL,
    TAG_TYPE,
    child_id_for,
    content_hash,
    dataset_name_id,
    segment_id_for,
    tag_name_id,
)
from schemas.platform import commands as pc
from schemas.platform import events as pe
from schemas.platform.naming import SETUP_ID, api_token_hash, api_token_hint

P = TypeVar("P", bound=EventPayload)
TestFunction = TypeVar("TestFunction", bound=Callable[..., None])

# --- which test covers which command type ------------------------------------------------

COVERAGE: dict[str, list[str]] = {}  # command type -> the tests that exercise it


def covers(*commands: type[CommandPayload]) -> Callable[[TestFunction], TestFunction]:
    """Declare the command types a test exercises (the `world` fixture checks it ran them)."""

    def mark(test: TestFunction) -> TestFunction:
        for command in commands:
            COVERAGE.setdefault(command.command_type, []).append(test.__name__)
        test.covered_commands = frozenset(c.command_type for c in commands)  # type: ignore[attr-defined]
        return test

    return mark


# --- the world a test runs commands in ---------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """A tenant and the account acting in it."""

    tenant_id: UUID
    actor_id: UUID


@dataclass(frozen=True)
class Ran:
    """A command's outcome and the events it recorded."""

    outcome: CommandOutcome
    events: list[Envelope[EventPayload]]

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def one(self, payload_type: type[P]) -> P:
        """The payload of the one event of that type the command recorded."""
        found = [e.payload for e in self.events if isinstance(e.payload, payload_type)]
        assert len(found) == 1, f"{payload_type.event_type} recorded {len(found)} times"
        return found[0]

    def event(self, payload_type: type[EventPayload]) -> Envelope[EventPayload]:
        found = [e for e in self.events if e.type == payload_type.event_type]
        assert len(found) == 1, f"{payload_type.event_type} recorded {len(found)} times"
        return found[0]


def accepted(ran: Ran, **result: Any) -> Ran:
    """The command was accepted (with exactly `result`, when given)."""
    assert ran.outcome.status == "accepted", ran.outcome.error
    assert ran.outcome.error is None
    if result:
        assert ran.outcome.result == result
    return ran


def unchanged(ran: Ran) -> None:
    """Accepted, but there was nothing to change: no events, no position to wait for."""
    accepted(ran)
    assert ran.events == [] and ran.outcome.position is None


def rejected(ran: Ran, error: type[errors.EddyError], message: str | None = None) -> None:
    """Rejected with that typed error (code, HTTP status, message); nothing recorded."""
    assert ran.outcome.status == "rejected", f"accepted: {ran.types}"
    assert ran.outcome.error == {"code": error.code, "status": error.status,
                                 "message": message or error.default_message}
    assert ran.events == [] and ran.outcome.position is None and ran.outcome.result == {}


class InterleavingStore(InMemoryEventStore):
    """Runs `before_next_append` just before the next append: another command committing
    between this command's decision and its commit."""

    def __init__(self) -> None:
        super().__init__()
        self.before_next_append: Callable[[], object] | None = None

    def append(self, events: Sequence[Envelope[EventPayload]],
               outcome: CommandOutcome | None = None) -> int:
        hook, self.before_next_append = self.before_next_append, None
        if hook is not None:
            hook()
        return super().append(events, outcome)


def partition_key(payload: CommandPayload) -> UUID:
    """The aggregate id a command travels under, as the gateway chooses it."""
    if isinstance(payload, pc.SetupPlatform):
        return SETUP_ID
    if isinstance(payload, cc.ConfigureAppModel | cc.ConfigureAppSite):
        return app_config_id_for(payload.app_id)
    if isinstance(payload, cc.CreateAnnotation | cc.UpdateAnnotation | cc.DeleteAnnotation
                  | cc.ConfigureAnnotationReply):
        return annotation_set_id_for(payload.app_id)
    for name in ("conversation_id", "file_id", "document_id", "tag_id", "target_id",
                 "dataset_id", "app_id", "key_id", "workspace_id", "batch_id"):
        value = getattr(payload, name, None)
        if isinstance(value, UUID):
            return value
    raise AssertionError(f"no partition key for {payload.command_type}")


RETRIEVAL = {"search_method": "semantic_search", "reranking_enable": False, "top_k": 3,
             "score_threshold_enabled": False}
AUTOMATIC_RULE: dict[str, Any] = {"mode": "automatic"}


def source(name: str = "notes.txt") -> ke.SourceFile:
    return ke.SourceFile(id=uuid4(), key=f"uploads/{uuid4().hex}/{name}", name=name, size=42,
                         extension=name.rsplit(".", 1)[-1], mime_type="text/plain")


class World:
    def __init__(self) -> None:
        self.store = InterleavingStore()
        self.me = Workspace(uuid4(), uuid4())
        self.rival = Workspace(uuid4(), uuid4())  # another workspace
        self.executed: set[str] = set()

    # --- running commands -------------------------------------------------------------

    def execute(self, payload: CommandPayload, as_: Workspace | None = None) -> Ran:
        who = as_ or self.me
        before = self.store.max_position()
        outcome = execute(self.store, ASSEMBLY.handlers, CommandEnvelope.of(
            payload, aggregate_id=partition_key(payload), tenant_id=who.tenant_id,
            actor_id=who.actor_id, correlation_id=uuid4()))
        return Ran(outcome, self.store.read_from(before, 100_000))

    def run(self, payload: CommandPayload, as_: Workspace | None = None) -> Ran:
        """Run the command under test (counted for `@covers`)."""
        self.executed.add(payload.command_type)
        return self.execute(payload, as_)

    def given(self, payload: CommandPayload, as_: Workspace | None = None) -> Ran:
        """Run a command that sets the scene (it must be accepted)."""
        return accepted(self.execute(payload, as_))

    # --- scenes -----------------------------------------------------------------------

    def app(self, name: str = "Helper", as_: Workspace | None = None) -> UUID:
        app_id = uuid4()
        self.given(pc.CreateApp(app_id=app_id, name=name, mode="chat"), as_)
        return app_id

    def dataset(self, name: str | None = None, as_: Workspace | None = None,
                technique: str | None = "high_quality") -> UUID:
        dataset_id = uuid4()
        self.given(kc.CreateDataset(
            dataset_id=dataset_id, name=name or f"kb-{dataset_id.hex[:6]}",
            indexing_technique=technique,  # type: ignore[arg-type]
            retrieval_model=RETRIEVAL), as_)
        return dataset_id

    def document(self, dataset_id: UUID, *, doc_form: str = "text_model",
                 name: str = "notes.txt", as_: Workspace | None = None) -> UUID:
        document_id = uuid4()
        self.given(kc.CreateDocument(
            dataset_id=dataset_id, document_id=document_id, name=name, position=1,
            batch="b1", source=source(name), doc_form=doc_form, process_rule=AUTOMATIC_RULE,
            process_rule_id=uuid4(), indexing_technique="high_quality", lane="priority"), as_)
        return document_id

    def index(self, document_id: UUID, contents: Sequence[str] = ("alpha text", "beta text"),
              children: int = 0) -> list[UUID]:
        """What the indexing processor records for the document's current attempt: its
        stages, and the split's segments (with `children` child chunks each); the segment ids."""
        tenant = self.store.load(document_id)[0].tenant_id
        cause = uuid4()
        ctx = Context(tenant_id=tenant, actor_id=None, correlation_id=cause, causation_id=cause)
        uow = UnitOfWork(self.store, ctx)
        doc = uow.get(Document, document_id)
        attempt = doc.attempt
        doc.stage(attempt, ke.DocumentProcessingStarted(attempt=attempt), ctx)
        doc.stage(attempt, ke.DocumentParsed(attempt=attempt, text_key="t", characters=9), ctx)
        doc.stage(attempt, ke.DocumentCleaned(attempt=attempt, text_key="c", characters=9), ctx)
        segment_ids = []
        for position, content in enumerate(contents, start=1):
            segment_id = segment_id_for(document_id, attempt, position)
            kids = [ke.ChildChunkData(id=child_id_for(segment_id, i), content=f"{content} {i}",
                                      position=i, word_count=len(content) + 2)
                    for i in range(1, children + 1)]
            uow.new(Segment, segment_id).create(ke.SegmentCreated(
                dataset_id=doc.dataset_id, document_id=document_id, attempt=attempt,
                position=position, content=content, word_count=len(content), tokens=3,
                index_node_hash=content_hash(content), child_chunks=kids), ctx)
            segment_ids.append(segment_id)
        doc.stage(attempt, ke.DocumentSplit(
            attempt=attempt, chunks_key="k", total_segments=len(contents),
            word_count=sum(map(len, contents)), tokens=3 * len(contents)), ctx)
        doc.stage(attempt, ke.DocumentSegmentsIndexed(
            attempt=attempt, segment_ids=segment_ids, completed_segments=len(contents)), ctx)
        doc.stage(attempt, ke.DocumentIndexingCompleted(
            attempt=attempt, completed_segments=len(contents)), ctx)
        uow.commit()
        return segment_ids

    def indexed_document(self, dataset_id: UUID, *, doc_form: str = "text_model",
                         children: int = 0) -> tuple[UUID, list[UUID]]:
        document_id = self.document(dataset_id, doc_form=doc_form)
        return document_id, self.index(document_id, children=children)

    def tag(self, name: str, as_: Workspace | None = None) -> UUID:
        tag_id = uuid4()
        self.given(kc.CreateTag(tag_id=tag_id, name=name), as_)
        return tag_id

    def workspace(self, who: Workspace | None = None) -> UUID:
        """The workspace aggregate of `who` (as the one-time setup creates it)."""
        who = who or self.me
        cause = uuid4()
        ctx = Context(tenant_id=who.tenant_id, actor_id=who.actor_id, correlation_id=cause,
                      causation_id=cause)
        uow = UnitOfWork(self.store, ctx)
        uow.new(WorkspaceAggregate, who.tenant_id).create("Team", who.actor_id, ctx)
        uow.commit()
        return who.tenant_id

    def metadata_field(self, dataset_id: UUID, name: str, type_: str = "string") -> UUID:
        metadata_id = uuid4()
        self.given(kc.AddMetadataField(dataset_id=dataset_id, metadata_id=metadata_id,
                                       name=name, type=type_))  # type: ignore[arg-type]
        return metadata_id


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w = World()
    yield w
    declared: frozenset[str] = getattr(request.function, "covered_commands", frozenset())
    missing = declared - w.executed
    assert not missing, f"{request.function.__name__} declares but never runs {sorted(missing)}"


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
# knowledge: datasets and their unique names
# =========================================================================================


def create_dataset(dataset_id: UUID, name: str, **settings: Any) -> kc.CreateDataset:
    return kc.CreateDataset(dataset_id=dataset_id, name=name, retrieval_model=RETRIEVAL,
                            **settings)


@covers(kc.CreateDataset)
def test_create_dataset_claims_its_name(world: World) -> None:
    dataset_id = uuid4()
    created = accepted(world.run(create_dataset(
        dataset_id, "Handbook", description="HR docs", indexing_technique="economy",
        permission="all_team_members")), dataset_id=str(dataset_id))
    assert sorted(created.types) == ["DatasetCreated", "DatasetNameClaimed"]
    claim = created.event(ke.DatasetNameClaimed)
    assert claim.aggregate_id == dataset_name_id(world.me.tenant_id, "Handbook")
    assert claim.payload == ke.DatasetNameClaimed(dataset_id=dataset_id)
    assert created.one(ke.DatasetCreated) == ke.DatasetCreated(
        name="Handbook", description="HR docs", indexing_technique="economy",
        permission="all_team_members", retrieval_model=RETRIEVAL,
        created_by=world.me.actor_id)
    assert created.event(ke.DatasetCreated).tenant_id == world.me.tenant_id
    assert created.outcome.aggregate_version == 1

    rejected(world.run(create_dataset(dataset_id, "Another name")), errors.BadRequest,
             "Dataset already exists.")


@covers(kc.CreateDataset)
def test_dataset_names_are_unique_per_workspace(world: World) -> None:
    world.dataset("Handbook")
    duplicate = world.run(create_dataset(uuid4(), "Handbook"))
    rejected(duplicate, errors.DatasetNameDuplicate)
    assert duplicate.outcome.error is not None
    assert (duplicate.outcome.error["code"], duplicate.outcome.error["status"]) == (
        "dataset_name_duplicate", 409)
    # Names are compared exactly; another workspace has its own names.
    accepted(world.run(create_dataset(uuid4(), "handbook")))
    accepted(world.run(create_dataset(uuid4(), "Handbook"), as_=world.rival))


@covers(kc.CreateDataset)
def test_concurrent_creates_of_one_name_let_one_through(world: World) -> None:
    first, second = uuid4(), uuid4()
    # The other create commits between this one's decision and its commit: this one's
    # claim finds the name's version 1 taken, decides again and is rejected.
    world.store.before_next_append = lambda: world.given(create_dataset(first, "Race"))
    race = world.run(create_dataset(second, "Race"))
    assert race.outcome.status == "rejected"
    assert race.outcome.error == errors.DatasetNameDuplicate().to_dict()
    assert sorted(race.types) == ["DatasetCreated", "DatasetNameClaimed"]  # the other's
    assert world.store.load(second) == []
    assert [e.payload for e in world.store.load(dataset_name_id(world.me.tenant_id, "Race"))
            ] == [ke.DatasetNameClaimed(dataset_id=first)]


@covers(kc.UpdateDataset)
def test_update_dataset_settings(world: World) -> None:
    dataset_id = world.dataset("Handbook")
    updated = accepted(world.run(kc.UpdateDataset(
        dataset_id=dataset_id, description="All HR", permission="only_me",
        retrieval_model={**RETRIEVAL, "top_k": 5})), dataset_id=str(dataset_id))
    assert updated.types == ["DatasetUpdated"]  # the name stays: no claim, no release
    assert updated.one(ke.DatasetUpdated) == ke.DatasetUpdated(
        name="Handbook", description="All HR", indexing_technique="high_quality",
        permission="only_me", embedding_model=None, embedding_model_provider=None,
        retrieval_model={**RETRIEVAL, "top_k": 5}, updated_by=world.me.actor_id)

    unchanged(world.run(kc.UpdateDataset(dataset_id=dataset_id, description="All HR")))
    unchanged(world.run(kc.UpdateDataset(dataset_id=dataset_id, name="Handbook")))

    rejected(world.run(kc.UpdateDataset(dataset_id=dataset_id, description="x"),
                       as_=world.rival), errors.DatasetNotFound)
    rejected(world.run(kc.UpdateDataset(dataset_id=uuid4(), description="x")),
             errors.DatasetNotFound)
    rejected(world.run(kc.UpdateDataset(dataset_id=world.app(), description="x")),
             errors.DatasetNotFound)
    world.given(kc.DeleteDataset(dataset_id=dataset_id))
    rejected(world.run(kc.UpdateDataset(dataset_id=dataset_id, description="x")),
             errors.DatasetNotFound)


@covers(kc.UpdateDataset)
def test_renaming_a_dataset_moves_its_name_claim(world: World) -> None:
    dataset_id = world.dataset("Handbook")
    world.dataset("Wiki")
    renamed = accepted(world.run(kc.UpdateDataset(dataset_id=dataset_id, name="Guide")))
    assert sorted(renamed.types) == ["DatasetNameClaimed", "DatasetNameReleased",
                                     "DatasetUpdated"]
    assert renamed.event(ke.DatasetNameClaimed).aggregate_id == dataset_name_id(
        world.me.tenant_id, "Guide")
    assert renamed.event(ke.DatasetNameReleased).aggregate_id == dataset_name_id(
        world.me.tenant_id, "Handbook")
    assert renamed.one(ke.DatasetUpdated).name == "Guide"

    # The old name is free; the new one is held; a taken name is refused whole.
    accepted(world.run(create_dataset(uuid4(), "Handbook")))
    rejected(world.run(create_dataset(uuid4(), "Guide")), errors.DatasetNameDuplicate)
    rejected(world.run(kc.UpdateDataset(dataset_id=dataset_id, name="Wiki",
                                        description="changed too")),
             errors.DatasetNameDuplicate)
    # ... and renaming back and forth works.
    accepted(world.run(kc.UpdateDataset(dataset_id=dataset_id, name="Guide 2")))
    accepted(world.run(kc.UpdateDataset(dataset_id=dataset_id, name="Guide")))


@covers(kc.UpdateDataset)
def test_switching_the_embedding_model_reindexes_every_document(world: World) -> None:
    dataset_id = world.dataset()
    ready, running = world.document(dataset_id), world.document(dataset_id)
    gone, elsewhere = world.document(dataset_id), world.document(world.dataset())
    world.given(kc.DeleteDocument(dataset_id=dataset_id, document_id=gone))
    # Both are still being indexed (attempt 1): a running attempt is superseded too.
    use = "universal-sentence-encoder-multilingual-3"
    switched = accepted(world.run(kc.UpdateDataset(
        dataset_id=dataset_id, embedding_model=use, embedding_model_provider="local",
        document_ids=[ready, running, gone, elsewhere, uuid4()])))
    assert switched.one(ke.DatasetUpdated).embedding_model == use
    requested = [e for e in switched.events if isinstance(e.payload, ke.DocumentIndexingRequested)]
    assert sorted(e.aggregate_id for e in requested) == sorted([ready, running])
    assert {(e.payload.attempt, e.payload.reason) for e in requested} == {
        (2, "embedding_model_changed")}

    # The same model again, or other settings: nothing is re-indexed.
    unchanged(world.run(kc.UpdateDataset(dataset_id=dataset_id, embedding_model=use,
                                         embedding_model_provider="local",
                                         document_ids=[ready])))
    renamed = accepted(world.run(kc.UpdateDataset(dataset_id=dataset_id, name="Other",
                                                  document_ids=[ready])))
    assert "DocumentIndexingRequested" not in renamed.types
    # An economy dataset has no vectors to redo.
    economy = world.dataset(technique="economy")
    cheap = world.document(economy)
    switched = accepted(world.run(kc.UpdateDataset(dataset_id=economy, embedding_model=use,
                                                   document_ids=[cheap])))
    assert switched.types == ["DatasetUpdated"]


@covers(kc.DeleteDataset)
def test_delete_dataset_frees_its_name(world: World) -> None:
    dataset_id = world.dataset("Handbook")
    rejected(world.run(kc.DeleteDataset(dataset_id=dataset_id), as_=world.rival),
             errors.DatasetNotFound)
    deleted = accepted(world.run(kc.DeleteDataset(dataset_id=dataset_id)),
                       dataset_id=str(dataset_id))
    assert sorted(deleted.types) == ["DatasetDeleted", "DatasetNameReleased"]
    assert deleted.one(ke.DatasetDeleted) == ke.DatasetDeleted(deleted_by=world.me.actor_id)
    assert deleted.one(ke.DatasetNameReleased) == ke.DatasetNameReleased(dataset_id=dataset_id)

    rejected(world.run(kc.DeleteDataset(dataset_id=dataset_id)), errors.DatasetNotFound)
    rejected(world.run(kc.DeleteDataset(dataset_id=world.app())), errors.DatasetNotFound)
    accepted(world.run(create_dataset(uuid4(), "Handbook")))


# =========================================================================================
# knowledge: documents
# =========================================================================================


def create_document(dataset_id: UUID, document_id: UUID | None = None, *,
                    technique: str = "high_quality", lane: str = "priority",
                    doc_form: str = "text_model") -> kc.CreateDocument:
    return kc.CreateDocument(
        dataset_id=dataset_id, document_id=document_id or uuid4(), name="notes.txt",
        position=3, batch="20250101000000123456", source=source(), doc_form=doc_form,
        process_rule=AUTOMATIC_RULE, process_rule_id=uuid4(),
        indexing_technique=technique, lane=lane)  # type: ignore[arg-type]


@covers(kc.CreateDocument)
def test_create_document_requests_its_indexing(world: World) -> None:
    dataset_id = world.dataset()
    command = create_document(dataset_id, lane="bulk")
    created = accepted(world.run(command), document_id=str(command.document_id),
                       batch=command.batch)
    assert created.types == ["DocumentCreated", "DocumentIndexingRequested"]
    assert created.one(ke.DocumentCreated) == ke.DocumentCreated(
        dataset_id=dataset_id, name="notes.txt", position=3, batch=command.batch,
        data_source_type="upload_file", source=command.source, doc_form="text_model",
        doc_language="English", process_rule=AUTOMATIC_RULE,
        process_rule_id=command.process_rule_id, indexing_technique="high_quality",
        created_from="api", created_by=world.me.actor_id)
    assert created.one(ke.DocumentIndexingRequested) == ke.DocumentIndexingRequested(
        attempt=1, lane="bulk", reason="created")
    assert created.outcome.aggregate_version == 2

    rejected(world.run(create_document(dataset_id, command.document_id)), errors.BadRequest,
             "Document already exists.")
    rejected(world.run(create_document(dataset_id), as_=world.rival), errors.DatasetNotFound)
    rejected(world.run(create_document(uuid4())), errors.DatasetNotFound)
    rejected(world.run(create_document(world.app())), errors.DatasetNotFound)
    world.given(kc.DeleteDataset(dataset_id=dataset_id))
    rejected(world.run(create_document(dataset_id)), errors.DatasetNotFound)


@covers(kc.CreateDocument)
def test_a_dataset_without_technique_takes_its_first_documents(world: World) -> None:
    dataset_id = world.dataset(technique=None)
    first = accepted(world.run(create_document(dataset_id, technique="economy")))
    assert sorted(first.types) == ["DatasetUpdated", "DocumentCreated",
                                  "DocumentIndexingRequested"]
    assert first.one(ke.DatasetUpdated).indexing_technique == "economy"
    second = accepted(world.run(create_document(dataset_id, technique="high_quality")))
    assert "DatasetUpdated" not in second.types


@covers(kc.ReplaceDocumentSource)
def test_replace_document_source_starts_a_new_attempt(world: World) -> None:
    dataset_id = world.dataset()
    document_id = world.document(dataset_id, name="old.txt")
    created = world.store.load(document_id)[0].payload
    assert isinstance(created, ke.DocumentCreated)
    rule_id = created.process_rule_id
    new_source = source("new.md")
    replaced = accepted(world.run(kc.ReplaceDocumentSource(
        dataset_id=dataset_id, document_id=document_id, source=new_source, lane="bulk")),
        document_id=str(document_id))
    assert replaced.types == ["DocumentSourceReplaced", "DocumentIndexingRequested"]
    # Name and rules (with the rule's id) stay unless given.
    assert replaced.one(ke.DocumentSourceReplaced) == ke.DocumentSourceReplaced(
        name="old.txt", source=new_source, process_rule=AUTOMATIC_RULE,
        process_rule_id=rule_id, updated_by=world.me.actor_id)
    assert replaced.one(ke.DocumentIndexingRequested) == ke.DocumentIndexingRequested(
        attempt=2, lane="bulk", reason="updated")
    custom = {"mode": "custom", "rules": {"segmentation": {"separator": "\n"}}}
    new_rule_id = uuid4()
    renamed = accepted(world.run(kc.ReplaceDocumentSource(
        dataset_id=dataset_id, document_id=document_id, name="new.md", source=new_source,
        process_rule=custom, process_rule_id=new_rule_id, lane="priority")))
    assert renamed.one(ke.DocumentSourceReplaced).name == "new.md"
    assert renamed.one(ke.DocumentSourceReplaced).process_rule == custom
    assert renamed.one(ke.DocumentSourceReplaced).process_rule_id == new_rule_id
    assert renamed.one(ke.DocumentIndexingRequested).attempt == 3

    def replace(dataset: UUID, document: UUID, as_: Workspace | None = None) -> Ran:
        return world.run(kc.ReplaceDocumentSource(dataset_id=dataset, document_id=document,
                                                  source=source(), lane="bulk"), as_)

    rejected(replace(dataset_id, document_id, world.rival), errors.DatasetNotFound)
    rejected(replace(world.dataset(), document_id), errors.DocumentNotFound)  # other dataset
    rejected(replace(dataset_id, dataset_id), errors.DocumentNotFound)  # a dataset's id
    rejected(replace(dataset_id, uuid4()), errors.DocumentNotFound)
    world.given(kc.DeleteDocument(dataset_id=dataset_id, document_id=document_id))
    rejected(replace(dataset_id, document_id), errors.DocumentNotFound)


def control(dataset_id: UUID, action: str, *document_ids: UUID) -> kc.ControlDocumentIndexing:
    return kc.ControlDocumentIndexing(dataset_id=dataset_id, document_ids=list(document_ids),
                                      action=action)  # type: ignore[arg-type]


@covers(kc.ControlDocumentIndexing)
def test_pause_and_resume_indexing(world: World) -> None:
    dataset_id = world.dataset()
    first, second = world.document(dataset_id), world.document(dataset_id)
    paused = accepted(world.run(control(dataset_id, "pause", first, second)),
                      document_ids=[str(first), str(second)])
    assert paused.types == ["DocumentIndexingPaused"] * 2
    assert {e.aggregate_id for e in paused.events} == {first, second}
    assert paused.events[0].payload == ke.DocumentIndexingPaused(paused_by=world.me.actor_id)
    rejected(world.run(control(dataset_id, "pause", first)), errors.DocumentNotPausable)

    resumed = accepted(world.run(control(dataset_id, "resume", first)))
    assert resumed.one(ke.DocumentIndexingResumed) == ke.DocumentIndexingResumed(
        lane="priority")
    # All or nothing: `first` is no longer paused, so `second` is not resumed either.
    rejected(world.run(control(dataset_id, "resume", second, first)), errors.BadRequest,
             "Document is not paused.")
    assert world.store.load(second)[-1].type == "DocumentIndexingPaused"

    # A finished document has nothing to pause.
    world.index(first)
    finished = world.run(control(dataset_id, "pause", first))
    rejected(finished, errors.DocumentNotPausable)
    error = finished.outcome.error
    assert error is not None and (error["code"], error["status"]) == (
        "document_indexing_error", 400)


@covers(kc.ControlDocumentIndexing)
def test_retry_and_reindex_start_new_attempts(world: World) -> None:
    dataset_id = world.dataset()
    document_id = world.document(dataset_id)
    rejected(world.run(control(dataset_id, "retry", document_id)), errors.BadRequest,
             "Document is already being indexed.")
    world.index(document_id)
    reindexed = accepted(world.run(control(dataset_id, "reindex", document_id)))
    assert reindexed.one(ke.DocumentIndexingRequested) == ke.DocumentIndexingRequested(
        attempt=2, lane="priority", reason="reindex")
    # A paused attempt may be retried (as a new attempt).
    world.given(control(dataset_id, "pause", document_id))
    retried = accepted(world.run(control(dataset_id, "retry", document_id)))
    assert retried.one(ke.DocumentIndexingRequested).attempt == 3

    rejected(world.run(control(dataset_id, "retry", document_id), as_=world.rival),
             errors.DatasetNotFound)
    rejected(world.run(control(dataset_id, "reindex", uuid4())), errors.DocumentNotFound)
    rejected(world.run(control(dataset_id, "reindex", dataset_id)), errors.DocumentNotFound)


def set_status(dataset_id: UUID, action: str, *document_ids: UUID) -> kc.UpdateDocumentStatus:
    return kc.UpdateDocumentStatus(dataset_id=dataset_id, document_ids=list(document_ids),
                                   action=action)  # type: ignore[arg-type]


@covers(kc.UpdateDocumentStatus)
def test_update_document_status(world: World) -> None:
    dataset_id = world.dataset()
    first, second = world.document(dataset_id, name="a.txt"), world.document(dataset_id)
    disabled = accepted(world.run(set_status(dataset_id, "disable", first, second)),
                        document_ids=[str(first), str(second)])
    assert disabled.types == ["DocumentUpdated"] * 2
    assert disabled.events[0].payload == ke.DocumentUpdated(
        name="a.txt", enabled=False, archived=False, updated_by=world.me.actor_id)
    unchanged(world.run(set_status(dataset_id, "disable", first)))

    archived = accepted(world.run(set_status(dataset_id, "archive", first)))
    assert archived.one(ke.DocumentUpdated) == ke.DocumentUpdated(
        name="a.txt", enabled=False, archived=True, updated_by=world.me.actor_id)
    restored = accepted(world.run(set_status(dataset_id, "un_archive", first)))
    assert restored.one(ke.DocumentUpdated).archived is False
    enabled = accepted(world.run(set_status(dataset_id, "enable", first)))
    assert enabled.one(ke.DocumentUpdated).enabled is True

    # All or nothing: one unknown document rejects the batch.
    rejected(world.run(set_status(dataset_id, "enable", second, uuid4())),
             errors.DocumentNotFound)
    rejected(world.run(set_status(dataset_id, "enable", second, world.tag("t"))),
             errors.DocumentNotFound)
    rejected(world.run(set_status(dataset_id, "enable", second), as_=world.rival),
             errors.DatasetNotFound)


@covers(kc.RenameDocument)
def test_rename_document(world: World) -> None:
    dataset_id = world.dataset()
    document_id = world.document(dataset_id, name="a.txt")
    renamed = accepted(world.run(kc.RenameDocument(dataset_id=dataset_id,
                                                   document_id=document_id, name="b.txt")),
                       document_id=str(document_id))
    assert renamed.one(ke.DocumentUpdated) == ke.DocumentUpdated(
        name="b.txt", enabled=True, archived=False, updated_by=world.me.actor_id)
    unchanged(world.run(kc.RenameDocument(dataset_id=dataset_id, document_id=document_id,
                                          name="b.txt")))
    rejected(world.run(kc.RenameDocument(dataset_id=dataset_id, document_id=document_id,
                                         name="c.txt"), as_=world.rival),
             errors.DatasetNotFound)
    rejected(world.run(kc.RenameDocument(dataset_id=world.dataset(), document_id=document_id,
                                         name="c.txt")), errors.DocumentNotFound)


@covers(kc.DeleteDocument)
def test_delete_document(world: World) -> None:
    dataset_id = world.dataset()
    document_id, (segment_id, _) = world.indexed_document(dataset_id)
    rejected(world.run(kc.DeleteDocument(dataset_id=dataset_id, document_id=segment_id)),
             errors.DocumentNotFound)
    rejected(world.run(kc.DeleteDocument(dataset_id=dataset_id, document_id=document_id),
                       as_=world.rival), errors.DatasetNotFound)
    deleted = accepted(world.run(kc.DeleteDocument(dataset_id=dataset_id,
                                                   document_id=document_id)),
                       document_id=str(document_id))
    created = world.store.load(document_id)[0].payload
    assert isinstance(created, ke.DocumentCreated)
    assert deleted.one(ke.DocumentDeleted) == ke.DocumentDeleted(
        dataset_id=dataset_id, source_key=created.source.key)
    rejected(world.run(kc.DeleteDocument(dataset_id=dataset_id, document_id=document_id)),
             errors.DocumentNotFound)


# =========================================================================================
# knowledge: segments
# =========================================================================================


def new_segment(content: str, **fields: Any) -> kc.NewSegment:
    return kc.NewSegment(segment_id=uuid4(), content=content, word_count=len(content),
                         tokens=2, **fields)


@covers(kc.CreateSegments)
def test_create_segments(world: World) -> None:
    dataset_id = world.dataset()
    document_id = world.document(dataset_id)
    segments = [new_segment("Q1", answer="A1", keywords=["q"]), new_segment("Q2")]

    def add(*new: kc.NewSegment, dataset: UUID = dataset_id, as_: Workspace | None = None,
            document: UUID = document_id) -> Ran:
        return world.run(kc.CreateSegments(dataset_id=dataset, document_id=document,
                                           first_position=3, segments=list(new)), as_)

    rejected(add(*segments), errors.BadRequest,
             "The document is not indexed yet; add segments once it is completed.")
    world.index(document_id)
    created = accepted(add(*segments), segment_ids=[str(s.segment_id) for s in segments])
    assert created.types == ["SegmentCreated"] * 2
    assert [e.aggregate_id for e in created.events] == [s.segment_id for s in segments]
    assert created.events[0].payload == ke.SegmentCreated(
        dataset_id=dataset_id, document_id=document_id, attempt=1, position=3, content="Q1",
        answer="A1", keywords=["q"], word_count=2, tokens=2, index_node_hash=content_hash("Q1"),
        created_by=world.me.actor_id)
    second = created.events[1].payload
    assert isinstance(second, ke.SegmentCreated) and second.position == 4

    rejected(add(segments[0]), errors.BadRequest, "Segment already exists.")
    rejected(add(new_segment("x"), as_=world.rival), errors.DatasetNotFound)
    rejected(add(new_segment("x"), document=dataset_id), errors.DocumentNotFound)
    rejected(add(new_segment("x"), dataset=world.dataset()), errors.DocumentNotFound)


@covers(kc.UpdateSegment)
def test_update_segment(world: World) -> None:
    dataset_id = world.dataset()
    document_id, (segment_id, other_segment) = world.indexed_document(dataset_id)

    def update(segment: UUID = segment_id, document: UUID = document_id,
               as_: Workspace | None = None, **changes: Any) -> Ran:
        return world.run(kc.UpdateSegment(dataset_id=dataset_id, document_id=document,
                                          segment_id=segment, **changes), as_)

    edited = accepted(update(content="alpha, edited", answer="yes", keywords=["k"],
                             word_count=13, tokens=4), segment_id=str(segment_id))
    assert edited.one(ke.SegmentUpdated) == ke.SegmentUpdated(
        content="alpha, edited", answer="yes", keywords=["k"], word_count=13, tokens=4,
        index_node_hash=content_hash("alpha, edited"), enabled=True, child_chunks=[],
        updated_by=world.me.actor_id)
    unchanged(update(content="alpha, edited", answer="yes"))

    # Disabling keeps what the segment says, and its counts.
    disabled = accepted(update(enabled=False))
    assert disabled.one(ke.SegmentUpdated).model_dump(include={
        "content", "answer", "keywords", "enabled", "word_count", "tokens"}) == {
        "content": "alpha, edited", "answer": "yes", "keywords": ["k"], "enabled": False,
        "word_count": 13, "tokens": 4}

    rejected(update(content="x", as_=world.rival), errors.DatasetNotFound)
    rejected(update(segment=document_id, content="x"), errors.SegmentNotFound)
    rejected(update(segment=uuid4(), content="x"), errors.SegmentNotFound)
    other_document, _ = world.indexed_document(dataset_id)
    rejected(update(document=other_document, content="x"), errors.SegmentNotFound)
    # Re-indexing replaces the split: the old attempt's segments are gone.
    world.given(control(dataset_id, "reindex", document_id))
    world.index(document_id)
    rejected(update(segment=other_segment, content="x"), errors.SegmentNotFound)


@covers(kc.DeleteSegment)
def test_delete_segment(world: World) -> None:
    dataset_id = world.dataset()
    document_id, (segment_id, _) = world.indexed_document(dataset_id)

    def delete(segment: UUID, as_: Workspace | None = None) -> Ran:
        return world.run(kc.DeleteSegment(dataset_id=dataset_id, document_id=document_id,
                                          segment_id=segment), as_)

    rejected(delete(segment_id, world.rival), errors.DatasetNotFound)
    rejected(delete(dataset_id), errors.SegmentNotFound)
    deleted = accepted(delete(segment_id), segment_id=str(segment_id))
    assert deleted.one(ke.SegmentDeleted) == ke.SegmentDeleted(dataset_id=dataset_id,
                                                               document_id=document_id)
    rejected(delete(segment_id), errors.SegmentNotFound)


@covers(kc.RecordSegmentHits)
def test_record_segment_hits(world: World) -> None:
    dataset_id = world.dataset()
    document_id, (segment_id, other) = world.indexed_document(dataset_id)
    hits = [ke.SegmentHits(document_id=document_id, segment_id=segment_id, count=3),
            ke.SegmentHits(document_id=document_id, segment_id=other, count=1)]
    batch = uuid4()
    recorded = accepted(world.run(kc.RecordSegmentHits(batch_id=batch, dataset_id=dataset_id,
                                                       hits=hits)), batch_id=str(batch))
    event = recorded.event(ke.SegmentsHit)
    assert (event.aggregate_type, event.aggregate_id, event.aggregate_version) == (
        "RetrievalHits", batch, 1)  # a batch of its own: nothing loaded, one append
    assert recorded.one(ke.SegmentsHit) == ke.SegmentsHit(dataset_id=dataset_id, hits=hits)
    # another workspace's dataset, a deleted one: refused, nothing recorded
    rejected(world.run(kc.RecordSegmentHits(batch_id=uuid4(), dataset_id=dataset_id,
                                            hits=hits), as_=world.rival),
             errors.DatasetNotFound)
    world.given(kc.DeleteDataset(dataset_id=dataset_id))
    rejected(world.run(kc.RecordSegmentHits(batch_id=uuid4(), dataset_id=dataset_id,
                                            hits=hits)), errors.DatasetNotFound)


# =========================================================================================
# knowledge: child chunks (parent-child documents)
# =========================================================================================


def child_chunks_of(ran: Ran) -> list[tuple[str, int, str]]:
    return [(c.content, c.position, c.type) for c in ran.one(ke.SegmentUpdated).child_chunks]


@covers(kc.CreateChildChunk)
def test_create_child_chunk(world: World) -> None:
    dataset_id = world.dataset()
    document_id, (segment_id, _) = world.indexed_document(dataset_id, doc_form=HIERARCHICAL,
                                                          children=2)
    child_id = uuid4()

    def create(child: UUID, document: UUID = document_id, segment: UUID = segment_id,
               as_: Workspace | None = None) -> Ran:
        return world.run(kc.CreateChildChunk(dataset_id=dataset_id, document_id=document,
                                             segment_id=segment, child_chunk_id=child,
                                             content="hand made"), as_)

    created = accepted(create(child_id), child_chunk_id=str(child_id))
    assert created.event(ke.SegmentUpdated).aggregate_id == segment_id
    assert child_chunks_of(created) == [("alpha text 1", 1, "automatic"),
                                        ("alpha text 2", 2, "automatic"),
                                        ("hand made", 3, "customized")]
    assert created.one(ke.SegmentUpdated).content == "alpha text"  # the parent stays
    rejected(create(child_id), errors.BadRequest, "Child chunk already exists.")
    rejected(create(uuid4(), segment=document_id), errors.SegmentNotFound)
    rejected(create(uuid4(), as_=world.rival), errors.DatasetNotFound)

    flat_document, (flat_segment, _) = world.indexed_document(dataset_id)
    rejected(create(uuid4(), document=flat_document, segment=flat_segment), errors.BadRequest,
             "Child chunks exist only in documents with doc_form hierarchical_model "
             "(parent-child chunking).")
    world.given(control(dataset_id, "reindex", document_id))
    rejected(create(uuid4()), errors.BadRequest,
             "The document is not indexed yet; edit child chunks once it is completed.")


@covers(kc.UpdateChildChunk)
def test_update_child_chunk(world: World) -> None:
    dataset_id = world.dataset()
    document_id, (segment_id, second_segment) = world.indexed_document(
        dataset_id, doc_form=HIERARCHICAL, children=2)
    first_child = child_id_for(segment_id, 1)

    def update(child: UUID, content: str) -> Ran:
        return world.run(kc.UpdateChildChunk(dataset_id=dataset_id, document_id=document_id,
                                             segment_id=segment_id, child_chunk_id=child,
                                             content=content))

    updated = accepted(update(first_child, "rewritten"), child_chunk_id=str(first_child))
    assert child_chunks_of(updated) == [("rewritten", 1, "customized"),
                                        ("alpha text 2", 2, "automatic")]
    assert updated.one(ke.SegmentUpdated).child_chunks[0].word_count == len("rewritten")
    unchanged(update(first_child, "rewritten"))
    rejected(update(uuid4(), "x"), errors.ChildChunkNotFound)
    # Another segment's child is not this segment's.
    rejected(update(child_id_for(second_segment, 1), "x"), errors.ChildChunkNotFound)


@covers(kc.DeleteChildChunk)
def test_delete_child_chunk(world: World) -> None:
    dataset_id = world.dataset()
    document_id, (segment_id, _) = world.indexed_document(dataset_id, doc_form=HIERARCHICAL,
                                                          children=2)
    child = child_id_for(segment_id, 1)

    def delete(child_id: UUID, as_: Workspace | None = None) -> Ran:
        return world.run(kc.DeleteChildChunk(dataset_id=dataset_id, document_id=document_id,
                                             segment_id=segment_id, child_chunk_id=child_id),
                         as_)

    rejected(delete(child, world.rival), errors.DatasetNotFound)
    deleted = accepted(delete(child), child_chunk_id=str(child))
    assert child_chunks_of(deleted) == [("alpha text 2", 2, "automatic")]
    rejected(delete(child), errors.ChildChunkNotFound)


# =========================================================================================
# knowledge: metadata fields and document values
# =========================================================================================


@covers(kc.AddMetadataField)
def test_add_metadata_field(world: World) -> None:
    dataset_id = world.dataset()
    metadata_id = uuid4()

    def add(name: str, type_: str = "string", field: UUID | None = None,
            dataset: UUID = dataset_id, as_: Workspace | None = None) -> Ran:
        return world.run(kc.AddMetadataField(dataset_id=dataset, metadata_id=field or uuid4(),
                                             name=name, type=type_), as_)  # type: ignore[arg-type]

    added = accepted(add("author", field=metadata_id), metadata_id=str(metadata_id))
    assert added.event(ke.DatasetMetadataFieldAdded).aggregate_id == dataset_id
    assert added.one(ke.DatasetMetadataFieldAdded) == ke.DatasetMetadataFieldAdded(
        metadata_id=metadata_id, name="author", type="string", created_by=world.me.actor_id)
    accepted(add("pages", "number"))
    accepted(add("published", "time"))

    rejected(add("author"), errors.BadRequest, "Metadata name already exists.")
    rejected(add("document_name"), errors.BadRequest,
             "Metadata name already exists in Built-in fields.")
    rejected(add(""), errors.BadRequest, "Metadata name cannot be empty.")
    rejected(add("x" * 256), errors.BadRequest, "Metadata name cannot exceed 255 characters.")
    rejected(add("editor", field=metadata_id), errors.BadRequest,
             "Metadata field already exists.")
    rejected(add("author", as_=world.rival), errors.DatasetNotFound)
    rejected(add("author", dataset=world.app()), errors.DatasetNotFound)
    # Names are unique per dataset only.
    accepted(add("author", dataset=world.dataset()))


@covers(kc.RenameMetadataField)
def test_rename_metadata_field(world: World) -> None:
    dataset_id = world.dataset()
    author = world.metadata_field(dataset_id, "author")
    world.metadata_field(dataset_id, "editor")

    def rename(field: UUID, name: str, as_: Workspace | None = None) -> Ran:
        return world.run(kc.RenameMetadataField(dataset_id=dataset_id, metadata_id=field,
                                                name=name), as_)

    renamed = accepted(rename(author, "writer"), metadata_id=str(author))
    assert renamed.one(ke.DatasetMetadataFieldRenamed) == ke.DatasetMetadataFieldRenamed(
        metadata_id=author, name="writer", updated_by=world.me.actor_id)
    unchanged(rename(author, "writer"))
    rejected(rename(author, "editor"), errors.BadRequest, "Metadata name already exists.")
    rejected(rename(author, "source"), errors.BadRequest,
             "Metadata name already exists in Built-in fields.")
    rejected(rename(uuid4(), "x"), errors.MetadataNotFound)
    rejected(rename(author, "x", world.rival), errors.DatasetNotFound)
    accepted(rename(author, "author"))  # the old name was free again


@covers(kc.DeleteMetadataField)
def test_delete_metadata_field(world: World) -> None:
    dataset_id = world.dataset()
    author = world.metadata_field(dataset_id, "author")
    rejected(world.run(kc.DeleteMetadataField(dataset_id=dataset_id, metadata_id=author),
                       as_=world.rival), errors.DatasetNotFound)
    deleted = accepted(world.run(kc.DeleteMetadataField(dataset_id=dataset_id,
                                                        metadata_id=author)),
                       metadata_id=str(author))
    assert deleted.one(ke.DatasetMetadataFieldDeleted) == ke.DatasetMetadataFieldDeleted(
        metadata_id=author, deleted_by=world.me.actor_id)
    rejected(world.run(kc.DeleteMetadataField(dataset_id=dataset_id, metadata_id=author)),
             errors.MetadataNotFound)
    world.metadata_field(dataset_id, "author")  # its name is free again


@covers(kc.ToggleBuiltInMetadataFields)
def test_toggle_built_in_metadata_fields(world: World) -> None:
    dataset_id = world.dataset()

    def toggle(enabled: bool, as_: Workspace | None = None) -> Ran:
        return world.run(kc.ToggleBuiltInMetadataFields(dataset_id=dataset_id,
                                                        enabled=enabled), as_)

    unchanged(toggle(False))  # off by default
    on = accepted(toggle(True), dataset_id=str(dataset_id))
    assert on.one(ke.DatasetBuiltInFieldsToggled) == ke.DatasetBuiltInFieldsToggled(
        enabled=True, updated_by=world.me.actor_id)
    unchanged(toggle(True))
    assert accepted(toggle(False)).one(ke.DatasetBuiltInFieldsToggled).enabled is False
    rejected(toggle(True, world.rival), errors.DatasetNotFound)


def set_metadata(document_id: UUID, values: dict[UUID, str | int | float | None],
                 partial: bool = False) -> kc.DocumentMetadataOperation:
    """One document's values, keyed by metadata field id."""
    return kc.DocumentMetadataOperation(
        document_id=document_id, partial_update=partial,
        values=[kc.MetadataValue(metadata_id=k, value=v) for k, v in values.items()])


@covers(kc.UpdateDocumentsMetadata)
def test_update_documents_metadata(world: World) -> None:
    dataset_id = world.dataset()
    author, pages, published = (world.metadata_field(dataset_id, "author"),
                                world.metadata_field(dataset_id, "pages", "number"),
                                world.metadata_field(dataset_id, "published", "time"))
    first, second = world.document(dataset_id), world.document(dataset_id)

    def update(*operations: kc.DocumentMetadataOperation, as_: Workspace | None = None) -> Ran:
        return world.run(kc.UpdateDocumentsMetadata(dataset_id=dataset_id,
                                                    operations=list(operations)), as_)

    updated = accepted(update(
        set_metadata(first, {author: 42, pages: "12", published: "2024-05-01T00:00:00"}),
        set_metadata(second, {pages: 2.5})),
        document_ids=[str(first), str(second)])
    assert [e.aggregate_id for e in updated.events] == [first, second]
    stamp = int(datetime(2024, 5, 1, tzinfo=UTC).timestamp())
    assert updated.events[0].payload == ke.DocumentMetadataUpdated(
        values={str(author): "42", str(pages): 12, str(published): stamp},
        updated_by=world.me.actor_id)
    assert updated.events[1].payload == ke.DocumentMetadataUpdated(
        values={str(pages): 2.5}, updated_by=world.me.actor_id)

    # A partial update keeps the other values; a full one replaces them all.
    partial = accepted(update(set_metadata(first, {author: "Ann"}, partial=True)))
    assert partial.one(ke.DocumentMetadataUpdated).values == {
        str(author): "Ann", str(pages): 12, str(published): stamp}
    full = accepted(update(set_metadata(first, {pages: 3})))
    assert full.one(ke.DocumentMetadataUpdated).values == {str(pages): 3}
    unchanged(update(set_metadata(first, {pages: "3"})))

    # All documents change or none; Dify answers 400 (not 404) for a document here.
    unknown_field = uuid4()
    for bad, message in [
        (set_metadata(second, {pages: "many"}),
         "Metadata 'pages' is a number; got 'many'."),
        (set_metadata(second, {published: "someday"}),
         "Metadata 'published' is a time (Unix seconds or ISO 8601); got 'someday'."),
        (set_metadata(second, {unknown_field: "x"}),
         f"Metadata field {unknown_field} not found."),
        (set_metadata(uuid4(), {author: "x"}), "Document not found."),
        (set_metadata(dataset_id, {author: "x"}), "Document not found."),
    ]:
        rejected(update(set_metadata(first, {pages: 99}), bad), errors.BadRequest,
                 message)
    rejected(update(set_metadata(first, {pages: 1}), as_=world.rival),
             errors.DatasetNotFound)

    # Values of a deleted field go the next time the document's values are written.
    world.given(kc.DeleteMetadataField(dataset_id=dataset_id, metadata_id=pages))
    written = accepted(update(set_metadata(first, {author: "Bo"}, partial=True)))
    assert written.one(ke.DocumentMetadataUpdated).values == {str(author): "Bo"}


# =========================================================================================
# knowledge: tags and their unique names
# =========================================================================================


@covers(kc.CreateTag)
def test_create_tag_claims_its_name(world: World) -> None:
    tag_id = uuid4()
    created = accepted(world.run(kc.CreateTag(tag_id=tag_id, name="finance")),
                       tag_id=str(tag_id))
    assert sorted(created.types) == ["TagCreated", "TagNameClaimed"]
    assert created.event(ke.TagNameClaimed).aggregate_id == tag_name_id(
        world.me.tenant_id, TAG_TYPE, "finance")
    assert created.one(ke.TagCreated) == ke.TagCreated(name="finance", type="knowledge",
                                                       created_by=world.me.actor_id)

    duplicate = world.run(kc.CreateTag(tag_id=uuid4(), name="finance"))
    rejected(duplicate, errors.TagNameDuplicate, "Tag name already exists")
    assert duplicate.outcome.error is not None
    assert (duplicate.outcome.error["code"], duplicate.outcome.error["status"]) == (
        "invalid_param", 400)
    rejected(world.run(kc.CreateTag(tag_id=tag_id, name="other")), errors.BadRequest,
             "Tag already exists.")
    accepted(world.run(kc.CreateTag(tag_id=uuid4(), name="finance"), as_=world.rival))


@covers(kc.RenameTag)
def test_rename_tag_moves_its_name_claim(world: World) -> None:
    tag_id = world.tag("finance")
    world.tag("legal")
    renamed = accepted(world.run(kc.RenameTag(tag_id=tag_id, name="money")),
                       tag_id=str(tag_id))
    assert sorted(renamed.types) == ["TagNameClaimed", "TagNameReleased", "TagRenamed"]
    assert renamed.one(ke.TagRenamed) == ke.TagRenamed(name="money",
                                                       updated_by=world.me.actor_id)
    world.tag("finance")  # the old name is free
    unchanged(world.run(kc.RenameTag(tag_id=tag_id, name="money")))
    rejected(world.run(kc.RenameTag(tag_id=tag_id, name="legal")), errors.TagNameDuplicate)
    rejected(world.run(kc.RenameTag(tag_id=tag_id, name="x"), as_=world.rival),
             errors.TagNotFound)
    rejected(world.run(kc.RenameTag(tag_id=world.dataset(), name="x")), errors.TagNotFound)


@covers(kc.DeleteTag)
def test_delete_tag_frees_its_name(world: World) -> None:
    tag_id = world.tag("finance")
    rejected(world.run(kc.DeleteTag(tag_id=tag_id), as_=world.rival), errors.TagNotFound)
    deleted = accepted(world.run(kc.DeleteTag(tag_id=tag_id)), tag_id=str(tag_id))
    assert sorted(deleted.types) == ["TagDeleted", "TagNameReleased"]
    assert deleted.one(ke.TagDeleted) == ke.TagDeleted(deleted_by=world.me.actor_id)
    rejected(world.run(kc.DeleteTag(tag_id=tag_id)), errors.TagNotFound)
    world.tag("finance")


@covers(kc.BindTags)
def test_bind_tags_to_a_dataset(world: World) -> None:
    dataset_id = world.dataset()
    finance, legal = world.tag("finance"), world.tag("legal")
    rivals_tag = world.tag("finance", as_=world.rival)

    def bind(target: UUID, *tags: UUID, as_: Workspace | None = None) -> Ran:
        return world.run(kc.BindTags(target_id=target, tag_ids=list(tags)), as_)

    # Unknown tags and other workspaces' tags are ignored, as Dify's spec says.
    bound = accepted(bind(dataset_id, finance, legal, finance, uuid4(), rivals_tag),
                     target_id=str(dataset_id))
    assert bound.types == ["TagBound", "TagBound"]
    assert [e.aggregate_id for e in bound.events] == [finance, legal]
    assert bound.events[0].payload == ke.TagBound(target_id=dataset_id,
                                                  created_by=world.me.actor_id)
    unchanged(bind(dataset_id, finance))
    rejected(bind(dataset_id, finance, as_=world.rival), errors.DatasetNotFound)
    rejected(bind(world.app(), finance), errors.DatasetNotFound)
    rejected(bind(finance, legal), errors.DatasetNotFound)  # a tag is no target


@covers(kc.UnbindTags)
def test_unbind_tags_from_a_dataset(world: World) -> None:
    dataset_id = world.dataset()
    finance, legal = world.tag("finance"), world.tag("legal")
    world.given(kc.BindTags(target_id=dataset_id, tag_ids=[finance]))

    def unbind(target: UUID, *tags: UUID, as_: Workspace | None = None) -> Ran:
        return world.run(kc.UnbindTags(target_id=target, tag_ids=list(tags)), as_)

    unbound = accepted(unbind(dataset_id, finance, legal, uuid4()), target_id=str(dataset_id))
    assert unbound.one(ke.TagUnbound) == ke.TagUnbound(target_id=dataset_id)
    assert unbound.event(ke.TagUnbound).aggregate_id == finance
    unchanged(unbind(dataset_id, finance))
    rejected(unbind(dataset_id, finance, as_=world.rival), errors.DatasetNotFound)
    rejected(unbind(uuid4(), finance), errors.DatasetNotFound)


# =========================================================================================
# running commands
# =========================================================================================


def test_a_redelivered_command_takes_effect_once(world: World) -> None:
    app_id = uuid4()
    command = CommandEnvelope.of(pc.CreateApp(app_id=app_id, name="Once", mode="chat"),
                                 aggregate_id=app_id, tenant_id=world.me.tenant_id,
                                 actor_id=world.me.actor_id, correlation_id=uuid4())
    first = execute(world.store, ASSEMBLY.handlers, command)
    again = execute(world.store, ASSEMBLY.handlers, command)
    assert again == first and first.status == "accepted"
    assert [e.type for e in world.store.load(app_id)] == ["AppCreated"]


def test_unknown_commands_and_invalid_payloads_are_rejected(world: World) -> None:
    def send(type_: str, payload: dict[str, Any]) -> CommandOutcome:
        return execute(world.store, ASSEMBLY.handlers, CommandEnvelope(
            command_id=uuid4(), type=type_, aggregate_id=uuid4(),
            tenant_id=world.me.tenant_id, actor_id=world.me.actor_id,
            correlation_id=uuid4(), payload=payload))

    unknown = send("LaunchRocket", {})
    assert unknown.status == "rejected" and unknown.error == {
        "code": "invalid_param", "status": 400,
        "message": "Unknown command type 'LaunchRocket'."}
    invalid = send("CreateApp", {"app_id": str(uuid4()), "name": "x", "mode": "spaceship"})
    assert invalid.status == "rejected" and invalid.error is not None
    assert (invalid.error["code"], invalid.error["status"]) == ("invalid_param", 400)
    assert world.store.max_position() == 0


def test_creating_under_an_id_of_another_kind_is_refused(world: World) -> None:
    dataset_id = world.dataset()
    ran = world.execute(pc.CreateApp(app_id=dataset_id, name="Clash", mode="chat"))
    # Accepted-with-nothing-stored would tell the caller the app exists when it does not.
    assert ran.outcome.status == "rejected"


# =========================================================================================
# conversation: app configuration
# =========================================================================================

CONFIG = {"model": {"provider": "openai", "name": "gpt-4o-mini", "mode": "chat",
                    "completion_params": {}}, "pre_prompt": "Be brief."}


@covers(cc.ConfigureAppModel)
def test_configure_app_model(world: World) -> None:
    app_id = world.app()
    ran = accepted(world.run(cc.ConfigureAppModel(app_id=app_id, config=CONFIG)),
                   app_id=str(app_id))
    assert ran.one(ce.AppModelConfigured) == ce.AppModelConfigured(
        app_id=app_id, config=CONFIG, updated_by=world.me.actor_id)
    assert ran.event(ce.AppModelConfigured).aggregate_id == app_config_id_for(app_id)
    unchanged(world.run(cc.ConfigureAppModel(app_id=app_id, config=CONFIG)))
    rejected(world.run(cc.ConfigureAppModel(app_id=app_id, config=CONFIG), as_=world.rival),
             errors.AppNotFound)
    rejected(world.run(cc.ConfigureAppModel(app_id=world.dataset(), config=CONFIG)),
             errors.AppNotFound)


@covers(cc.ConfigureAppSite)
def test_configure_app_site_merges_what_is_sent(world: World) -> None:
    app_id = world.app()
    first = accepted(world.run(cc.ConfigureAppSite(app_id=app_id, changes={"title": "Guide"})))
    assert first.one(ce.AppSiteConfigured).site == {"title": "Guide"}
    second = accepted(world.run(cc.ConfigureAppSite(app_id=app_id,
                                                    changes={"copyright": "2026"})))
    assert second.one(ce.AppSiteConfigured).site == {"title": "Guide", "copyright": "2026"}
    unchanged(world.run(cc.ConfigureAppSite(app_id=app_id, changes={"title": "Guide"})))
    world.given(pc.DeleteApp(app_id=app_id))
    rejected(world.run(cc.ConfigureAppSite(app_id=app_id, changes={"title": "x"})),
             errors.AppNotFound)


# =========================================================================================
# conversation: messages, renames, deletions, feedback
# =========================================================================================


def ask(app_id: UUID, conversation_id: UUID, query: str = "Hi?", *, user: str = "u1",
        new: bool = True) -> cc.SendMessage:
    return cc.SendMessage(conversation_id=conversation_id, message_id=uuid4(), task_id=uuid4(),
                          app_id=app_id, mode="chat", user=user, query=query, inputs={"a": "b"},
                          config=CONFIG, new_conversation=new)


@covers(cc.SendMessage)
def test_send_message_starts_and_continues_a_conversation(world: World) -> None:
    app_id, conversation_id = world.app(), uuid4()
    first = ask(app_id, conversation_id, "What time is it in " + "a very long place " * 5)
    ran = accepted(world.run(first), conversation_id=str(conversation_id),
                   message_id=str(first.message_id), task_id=str(first.task_id))
    assert ran.types == ["ConversationStarted", "MessageCreated"]
    started = ran.one(ce.ConversationStarted)
    assert started.end_user_id == end_user_id_for(app_id, "u1") and started.user == "u1"
    assert len(started.name) == 50 and started.name.endswith("...")
    created = ran.one(ce.MessageCreated)
    assert (created.message_id, created.task_id, created.config, created.inputs) == (
        first.message_id, first.task_id, CONFIG, {"a": "b"})

    follow = accepted(world.run(ask(app_id, conversation_id, "And now?", new=False)))
    assert follow.types == ["MessageCreated"]
    # another end user, another app, a missing conversation: all "Conversation Not Exists."
    rejected(world.run(ask(app_id, conversation_id, user="u2", new=False)),
             errors.ConversationNotFound)
    rejected(world.run(ask(world.app("Other"), conversation_id, new=False)),
             errors.ConversationNotFound)
    rejected(world.run(ask(app_id, uuid4(), new=False)), errors.ConversationNotFound)
    rejected(world.run(ask(app_id, uuid4()), as_=world.rival), errors.AppNotFound)


@covers(cc.RenameConversation, cc.DeleteConversation)
def test_rename_and_delete_conversation(world: World) -> None:
    app_id, conversation_id = world.app(), uuid4()
    world.given(ask(app_id, conversation_id))
    renamed = accepted(world.run(cc.RenameConversation(
        conversation_id=conversation_id, app_id=app_id, user="u1", name="Trip")))
    assert renamed.one(ce.ConversationRenamed).name == "Trip"
    rejected(world.run(cc.RenameConversation(conversation_id=conversation_id, app_id=app_id,
                                             user="u2", name="Mine")),
             errors.ConversationNotFound)
    rejected(world.run(cc.DeleteConversation(conversation_id=conversation_id, app_id=app_id,
                                             user="u2")), errors.ConversationNotFound)
    deleted = accepted(world.run(cc.DeleteConversation(conversation_id=conversation_id,
                                                       app_id=app_id, user="u1")))
    assert deleted.types == ["ConversationDeleted"]
    rejected(world.run(ask(app_id, conversation_id, new=False)), errors.ConversationNotFound)
    rejected(world.run(cc.DeleteConversation(conversation_id=conversation_id, app_id=app_id,
                                             user="u1")), errors.ConversationNotFound)


@covers(cc.GiveMessageFeedback)
def test_message_feedback(world: World) -> None:
    app_id, conversation_id = world.app(), uuid4()
    question = ask(app_id, conversation_id)
    world.given(question)

    def feedback(rating: str | None, user: str = "u1",
                 message_id: UUID | None = None) -> cc.GiveMessageFeedback:
        return cc.GiveMessageFeedback(conversation_id=conversation_id, app_id=app_id, user=user,
                                      message_id=message_id or question.message_id,
                                      rating=rating, content="great")  # type: ignore[arg-type]

    liked = accepted(world.run(feedback("like")))
    assert liked.one(ce.MessageFeedbackGiven) == ce.MessageFeedbackGiven(
        message_id=question.message_id, rating="like", content="great")
    assert accepted(world.run(feedback(None))).one(ce.MessageFeedbackGiven).rating is None
    rejected(world.run(feedback("like", message_id=uuid4())), errors.MessageNotFound)
    rejected(world.run(feedback("like", user="u2")), errors.ConversationNotFound)


@covers(cc.RecordFileUpload)
def test_record_file_upload(world: World) -> None:
    app_id, file_id = world.app(), uuid4()
    upload = cc.RecordFileUpload(file_id=file_id, app_id=app_id, user="ann", name="cat.png",
                                 size=3, extension="png", mime_type="image/png", key="k")
    ran = accepted(world.run(upload), file_id=str(file_id))
    assert ran.one(ce.FileUploaded) == ce.FileUploaded(
        app_id=app_id, end_user_id=end_user_id_for(app_id, "ann"), name="cat.png", size=3,
        extension="png", mime_type="image/png", key="k")
    unchanged(world.run(upload))
    rejected(world.run(upload.model_copy(update={"file_id": uuid4()}), as_=world.rival),
             errors.AppNotFound)


@covers(cc.CreateAnnotation, cc.UpdateAnnotation, cc.DeleteAnnotation)
def test_annotations_created_updated_and_deleted(world: World) -> None:
    app_id, annotation_id = world.app(), uuid4()
    create = cc.CreateAnnotation(app_id=app_id, annotation_id=annotation_id,
                                 question="Opening hours?", answer="9 to 5.")
    ran = accepted(world.run(create), annotation_id=str(annotation_id))
    assert ran.one(ce.AnnotationCreated) == ce.AnnotationCreated(
        app_id=app_id, annotation_id=annotation_id, question="Opening hours?", answer="9 to 5.")
    unchanged(world.run(create))  # the same request decided again
    update = cc.UpdateAnnotation(app_id=app_id, annotation_id=annotation_id,
                                 question="Opening hours?", answer="9 to 6.")
    assert accepted(world.run(update)).one(ce.AnnotationUpdated).answer == "9 to 6."
    unchanged(world.run(update))
    # another app's annotation, another workspace's app: not found
    rejected(world.run(update.model_copy(update={"app_id": world.app("Other")})),
             errors.AnnotationNotFound)
    rejected(world.run(update, as_=world.rival), errors.AppNotFound)
    delete = cc.DeleteAnnotation(app_id=app_id, annotation_id=annotation_id)
    assert accepted(world.run(delete)).types == ["AnnotationDeleted"]
    rejected(world.run(delete), errors.AnnotationNotFound)
    rejected(world.run(update), errors.AnnotationNotFound)


@covers(cc.ConfigureAnnotationReply)
def test_configure_annotation_reply_requests_a_job(world: World) -> None:
    app_id, job_id = world.app(), uuid4()
    enable = cc.ConfigureAnnotationReply(
        app_id=app_id, job_id=job_id, action="enable", score_threshold=0.9,
        embedding_provider_name="openai", embedding_model_name="text-embedding-3-small")
    ran = accepted(world.run(enable), job_id=str(job_id))
    assert ran.one(ce.AnnotationReplyRequested) == ce.AnnotationReplyRequested(
        app_id=app_id, job_id=job_id, action="enable", score_threshold=0.9,
        embedding_provider_name="openai", embedding_model_name="text-embedding-3-small")
    unchanged(world.run(enable))
    rejected(world.run(enable.model_copy(update={"job_id": uuid4()}), as_=world.rival),
             errors.AppNotFound)


# =========================================================================================
# every command type is covered
# =========================================================================================


@pytest.mark.parametrize("command_type", sorted(ASSEMBLY.handlers.by_name))
def test_every_registered_command_type_has_a_scenario(command_type: str) -> None:
    assert COVERAGE.get(command_type), f"no test in this file @covers {command_type}"


def test_scenarios_cover_only_registered_command_types() -> None:
    assert set(COVERAGE) <= set(ASSEMBLY.handlers.by_name)
