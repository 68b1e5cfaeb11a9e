"""Every projector of the console read model, in process: realistic event sequences applied
to the read-model tables in an in-memory SQLite database (SQLAlchemy's async engine over
aiosqlite), then the rows the API shows checked, through the read side's own queries where
they are portable SQL.

Production runs the same projectors on Postgres (tests/e2e cover that). Each event is
applied in its own transaction, as `ProjectionRunner` does. Every test names the event types
it exercises (`@exercises(...)`) and fails unless it applied them all; the guard below fails
for a projector that no test exercises.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest
from sqlalchemy import RowMapping, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from adapters.secrets import seal
from bootstrap import ASSEMBLY
from events.envelope import Envelope
from projections.conversation import queries as cq
from projections.conversation.tables import (
    annotation_hits,
    conversations,
    end_users,
    messages,
)
from projections.knowledge import queries as kq
from projections.knowledge.tables import (
    dataset_metadata_fields,
    datasets,
    documents,
    segment_hits,
    segments,
    tag_bindings,
    tags,
)
from projections.platform import models as pm
from projections.platform import queries as pq
from projections.platform.tables import workspace_members, workspaces
from projections.tables import PROJECTION_NAME, READ, account_credentials, metadata
from schemas import errors
from schemas.base import EventPayload
from schemas.conversation import events as cev
from schemas.conversation.naming import (
    annotation_set_id_for,
    app_config_id_for,
    end_user_id_for,
)
from schemas.knowledge import events as kev
from schemas.knowledge.naming import content_hash
from schemas.platform import events as pev
from schemas.platform.naming import SETUP_ID, api_token_hash, api_token_hint
from schemas.platform.providers import credentials_purpose, masked, provider_spec

PROJECTION = ASSEMBLY.projections[PROJECTION_NAME]
READ_TABLES = [t for t in metadata.sorted_tables if t.schema == READ]
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
P = TypeVar("P", bound=EventPayload)


# --- the harness -------------------------------------------------------------------------------


class World:
    """An empty read model, one workspace's actors, and the events applied so far."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.tenant = uuid4()
        self.actor = uuid4()
        self.applied: set[type[EventPayload]] = set()
        self._versions: dict[UUID, int] = {}
        self._position = 0

    async def emit(self, aggregate_type: str, aggregate_id: UUID, payload: P,
                   tenant_id: UUID | None = None) -> Envelope[P]:
        """The aggregate's next event (one second after the previous one), applied."""
        self._position += 1
        version = self._versions[aggregate_id] = self._versions.get(aggregate_id, 0) + 1
        cid = uuid4()
        event = Envelope.new(payload, aggregate_type=aggregate_type, aggregate_id=aggregate_id,
                             aggregate_version=version, tenant_id=tenant_id or self.tenant,
                             correlation_id=cid, causation_id=cid)
        event = replace(event, occurred_at=T0 + timedelta(seconds=self._position),
                        position=self._position)
        await apply(self, event)
        return event

    async def row(self, table: Table, key: UUID) -> RowMapping | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(table).where(table.c.id == key))).mappings().first()

    async def one(self, table: Table, key: UUID) -> RowMapping:
        found = await self.row(table, key)
        assert found is not None, f"no {table.name} row {key}"
        return found

    async def rows(self, table: Table, *where: Any) -> Sequence[RowMapping]:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(table).where(*where))).mappings().all()


async def apply(world: World, event: Envelope[EventPayload]) -> None:
    """As the runner does: the event type's projector, in a transaction of its own."""
    projector = PROJECTION.handlers[type(event.payload)]
    async with world.engine.begin() as conn:
        await projector(conn, event)
    world.applied.add(type(event.payload))


def stored(e: Envelope[Any]) -> datetime:
    """An event's time as SQLite gives it back (UTC, without its zone)."""
    return e.occurred_at.replace(tzinfo=None)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    engine = engine.execution_options(schema_translate_map={READ: None})
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=[*READ_TABLES, account_credentials])
    yield World(engine)
    await engine.dispose()


Scenario = Callable[[World], Awaitable[None]]
SCENARIOS: dict[type[EventPayload], list[str]] = {}


def exercises(*event_types: type[EventPayload]) -> Callable[[Scenario], Scenario]:
    """Names the test as a scenario of these event types; it fails unless it applies them."""

    def register(test: Scenario) -> Scenario:
        for event_type in event_types:
            SCENARIOS.setdefault(event_type, []).append(test.__name__)

        @functools.wraps(test)
        async def checked(world: World) -> None:
            await test(world)
            missing = sorted(t.__name__ for t in set(event_types) - world.applied)
            assert not missing, f"{test.__name__} never applied {missing}"

        return checked

    return register


# --- knowledge fixtures ------------------------------------------------------------------------

RETRIEVAL = {"search_method": "semantic_search", "top_k": 3, "reranking_enable": False}
RULE = {"mode": "automatic", "rules": {}}
RULE_ID = uuid4()


def source(name: str) -> kev.SourceFile:
    return kev.SourceFile(id=uuid4(), key=f"uploads/{uuid4()}", name=name, size=120,
                          extension="txt",
                          mime_type="text/plain")


async def new_dataset(w: World, name: str = "Handbook") -> UUID:
    dataset_id = uuid4()
    await w.emit("Dataset", dataset_id, kev.DatasetCreated(
        name=name, description="Company handbook", indexing_technique="high_quality",
        embedding_model="all-MiniLM-L6-v2", embedding_model_provider="local",
        retrieval_model=RETRIEVAL, created_by=w.actor))
    return dataset_id


async def new_document(w: World, dataset_id: UUID, name: str = "guide.txt",
                       position: int = 1) -> UUID:
    document_id = uuid4()
    await w.emit("Document", document_id, kev.DocumentCreated(
        dataset_id=dataset_id, name=name, position=position, batch="20250301090000123456",
        data_source_type="upload_file", source=source(name), doc_form="text_model",
        doc_language="English", process_rule=RULE, process_rule_id=uuid4(),
        indexing_technique="high_quality", created_from="api", created_by=w.actor))
    await w.emit("Document", document_id, kev.DocumentIndexingRequested(
        attempt=1, lane="priority", reason="created"))
    return document_id


async def split(w: World, dataset_id: UUID, document_id: UUID, attempt: int,
                *contents: str) -> list[UUID]:
    """The pipeline up to its split: the segments (one store transaction with the split),
    then the split itself."""
    for stage in (kev.DocumentProcessingStarted(attempt=attempt),
                  kev.DocumentParsed(attempt=attempt, text_key="t", characters=100),
                  kev.DocumentCleaned(attempt=attempt, text_key="c", characters=90)):
        await w.emit("Document", document_id, stage)
    segment_ids = [uuid4() for _ in contents]
    for position, (segment_id, content) in enumerate(zip(segment_ids, contents, strict=True),
                                                     start=1):
        await w.emit("Segment", segment_id, kev.SegmentCreated(
            dataset_id=dataset_id, document_id=document_id, attempt=attempt,
            position=position, content=content, word_count=len(content), tokens=position,
            index_node_hash=content_hash(content)))
    await w.emit("Document", document_id, kev.DocumentSplit(
        attempt=attempt, chunks_key="k", total_segments=len(contents),
        word_count=sum(map(len, contents)), tokens=sum(range(1, len(contents) + 1))))
    return segment_ids


async def indexed(w: World, dataset_id: UUID, document_id: UUID, *contents: str) -> list[UUID]:
    """A document indexed in full on its first attempt."""
    segment_ids = await split(w, dataset_id, document_id, 1, *contents)
    await w.emit("Document", document_id, kev.DocumentSegmentsIndexed(
        attempt=1, segment_ids=segment_ids, completed_segments=len(segment_ids)))
    await w.emit("Document", document_id, kev.DocumentIndexingCompleted(
        attempt=1, completed_segments=len(segment_ids)))
    return segment_ids


async def live_segments(w: World, document_id: UUID) -> list[dict[str, Any]]:
    page = await kq.list_segments(w.engine, document_id, page=1, limit=100, keyword=None,
                                  status=None)
    assert page.total == len(page.items)
    return page.items


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


# --- knowledge: datasets, documents, segments -----------------------------------------------


@exercises(kev.DatasetCreated, kev.DatasetUpdated, kev.DatasetDeleted)
async def test_dataset_created_updated_and_deleted_with_all_it_holds(world: World) -> None:
    dataset_id = uuid4()
    created = await world.emit("Dataset", dataset_id, kev.DatasetCreated(
        name="Handbook", indexing_technique=None, retrieval_model=RETRIEVAL,
        created_by=world.actor))
    row = await world.one(datasets, dataset_id)
    assert {k: row[k] for k in ("tenant_id", "name", "description", "permission",
                                "indexing_technique", "embedding_model",
                                "embedding_model_provider", "retrieval_model", "created_by",
                                "updated_by", "built_in_field_enabled")} == {
        "tenant_id": world.tenant, "name": "Handbook", "description": "",
        "permission": "only_me", "indexing_technique": None, "embedding_model": None,
        "embedding_model_provider": None, "retrieval_model": RETRIEVAL,
        "created_by": world.actor, "updated_by": world.actor, "built_in_field_enabled": False}
    assert row["created_at"] == row["updated_at"] == stored(created)

    editor = uuid4()
    hybrid = {**RETRIEVAL, "search_method": "hybrid_search", "top_k": 5}
    updated = await world.emit("Dataset", dataset_id, kev.DatasetUpdated(
        name="Staff Handbook", description="All policies", indexing_technique="high_quality",
        permission="all_team_members", embedding_model="all-MiniLM-L6-v2",
        embedding_model_provider="local", retrieval_model=hybrid, updated_by=editor))
    row = await world.one(datasets, dataset_id)
    assert (row["name"], row["description"], row["permission"], row["indexing_technique"],
            row["embedding_model"], row["embedding_model_provider"], row["retrieval_model"]) == (
        "Staff Handbook", "All policies", "all_team_members", "high_quality",
        "all-MiniLM-L6-v2", "local", hybrid)
    assert (row["created_by"], row["updated_by"]) == (world.actor, editor)
    assert (row["created_at"], row["updated_at"]) == (stored(created), stored(updated))

    # Everything in it goes; its tags stay, unbound from it. Another dataset is untouched.
    other = await new_dataset(world, "Other")
    kept_doc = await new_document(world, other)
    await indexed(world, other, kept_doc, "kept")
    document_id = await new_document(world, dataset_id)
    await indexed(world, dataset_id, document_id, "one", "two")
    field, tag = uuid4(), uuid4()
    for target in (dataset_id, other):
        await world.emit("Dataset", target, kev.DatasetMetadataFieldAdded(
            metadata_id=uuid4() if target == other else field, name="author", type="string"))
    await world.emit("Tag", tag, kev.TagCreated(name="HR"))
    for target in (dataset_id, other):
        await world.emit("Tag", tag, kev.TagBound(target_id=target))

    await world.emit("Dataset", dataset_id, kev.DatasetDeleted(deleted_by=editor))
    assert await world.row(datasets, dataset_id) is None
    assert await world.rows(documents, documents.c.dataset_id == dataset_id) == []
    assert await world.rows(segments, segments.c.dataset_id == dataset_id) == []
    assert await world.row(dataset_metadata_fields, field) is None
    assert [b["target_id"] for b in await world.rows(tag_bindings)] == [other]
    assert (await world.one(tags, tag))["name"] == "HR"
    assert await world.row(datasets, other) is not None
    assert [s["content"] for s in await live_segments(world, kept_doc)] == ["kept"]
    assert len(await world.rows(dataset_metadata_fields)) == 1


@exercises(kev.DocumentCreated, kev.DocumentIndexingRequested, kev.DocumentProcessingStarted,
           kev.DocumentParsed, kev.DocumentCleaned, kev.SegmentCreated, kev.DocumentSplit,
           kev.DocumentSegmentsIndexed, kev.DocumentIndexingCompleted)
async def test_document_moves_through_the_indexing_stages(world: World) -> None:
    dataset_id = await new_dataset(world)
    document_id = uuid4()
    created = await world.emit("Document", document_id, kev.DocumentCreated(
        dataset_id=dataset_id, name="guide.txt", position=3, batch="b1",
        data_source_type="upload_file", source=source("guide.txt"), doc_form="text_model",
        doc_language="English", process_rule=RULE, process_rule_id=RULE_ID,
        indexing_technique="high_quality", created_from="web", created_by=world.actor))
    doc = await world.one(documents, document_id)
    assert {k: doc[k] for k in ("tenant_id", "dataset_id", "position", "name", "batch",
                                "data_source_type", "doc_form", "doc_language",
                                "process_rule", "process_rule_id", "indexing_technique",
                                "created_from", "created_by", "attempt", "split_attempt",
                                "indexing_status",
                                "is_paused", "error", "enabled", "archived", "word_count",
                                "tokens", "total_segments", "completed_segments",
                                "doc_metadata")} == {
        "tenant_id": world.tenant, "dataset_id": dataset_id, "position": 3,
        "name": "guide.txt", "batch": "b1", "data_source_type": "upload_file",
        "doc_form": "text_model", "doc_language": "English", "process_rule": RULE,
        "process_rule_id": RULE_ID, "indexing_technique": "high_quality", "created_from": "web",
        "created_by": world.actor, "attempt": 0, "split_attempt": 0,
        "indexing_status": "waiting", "is_paused": False, "error": None, "enabled": True,
        "archived": False, "word_count": 0, "tokens": 0, "total_segments": 0,
        "completed_segments": 0, "doc_metadata": {}}
    assert doc["source"] == {**created.payload.source.model_dump(mode="json"),
                             "created_by": str(world.actor),
                             "created_at": int(created.occurred_at.timestamp())}
    assert doc["created_at"] == doc["updated_at"] == stored(created)
    assert [d["id"] for d in await kq.documents_in_batch(world.engine, dataset_id, "b1")] == [
        document_id]

    await world.emit("Document", document_id, kev.DocumentIndexingRequested(
        attempt=1, lane="priority", reason="created"))
    assert (await world.one(documents, document_id))["attempt"] == 1

    stages: list[tuple[EventPayload, str, str]] = [
        (kev.DocumentProcessingStarted(attempt=1), "parsing", "processing_started_at"),
        (kev.DocumentParsed(attempt=1, text_key="t", characters=80), "cleaning",
         "parsing_completed_at"),
        (kev.DocumentCleaned(attempt=1, text_key="c", characters=70), "splitting",
         "cleaning_completed_at"),
    ]
    for payload, status, stamp in stages:
        e = await world.emit("Document", document_id, payload)
        doc = await world.one(documents, document_id)
        assert (doc["indexing_status"], doc[stamp], doc["updated_at"]) == (
            status, stored(e), stored(e))

    contents = ["Vacation is 30 days.", "Sick leave needs a note.", "Ask HR."]
    segment_ids = [uuid4() for _ in contents]
    for position, (segment_id, content) in enumerate(zip(segment_ids, contents, strict=True),
                                                     start=1):
        await world.emit("Segment", segment_id, kev.SegmentCreated(
            dataset_id=dataset_id, document_id=document_id, attempt=1, position=position,
            content=content, keywords=["leave"], word_count=len(content), tokens=position * 2,
            index_node_hash=content_hash(content), child_chunks=[kev.ChildChunkData(
                id=uuid4(), content=content[:8], position=1, word_count=8)]))
    total_words = sum(map(len, contents))
    split_at = await world.emit("Document", document_id, kev.DocumentSplit(
        attempt=1, chunks_key="k", total_segments=3, word_count=total_words, tokens=12))
    doc = await world.one(documents, document_id)
    assert {k: doc[k] for k in ("indexing_status", "split_attempt", "total_segments",
                                "completed_segments", "word_count", "tokens",
                                "splitting_completed_at")} == {
        "indexing_status": "indexing", "split_attempt": 1, "total_segments": 3,
        "completed_segments": 0, "word_count": total_words, "tokens": 12,
        "splitting_completed_at": stored(split_at)}
    listed = await live_segments(world, document_id)
    assert [(s["position"], s["content"], s["status"], s["keywords"], s["enabled"],
             s["hit_count"], s["answer"]) for s in listed] == [
        (n, c, "indexing", ["leave"], True, 0, "") for n, c in enumerate(contents, start=1)]
    assert listed[0]["child_chunks"][0]["content"] == "Vacation"
    assert listed[0]["child_chunks"][0]["type"] == "automatic"

    batch = await world.emit("Document", document_id, kev.DocumentSegmentsIndexed(
        attempt=1, segment_ids=segment_ids[:2], completed_segments=2))
    assert (await world.one(documents, document_id))["completed_segments"] == 2
    assert [(s["status"], s["completed_at"]) for s in await live_segments(world, document_id)] \
        == [("completed", stored(batch))] * 2 + [("indexing", None)]
    assert await kq.searchable_document_ids(world.engine, dataset_id) == []

    await world.emit("Document", document_id, kev.DocumentSegmentsIndexed(
        attempt=1, segment_ids=segment_ids[2:], completed_segments=3))
    done = await world.emit("Document", document_id, kev.DocumentIndexingCompleted(
        attempt=1, completed_segments=3))
    doc = await world.one(documents, document_id)
    assert (doc["indexing_status"], doc["completed_at"], doc["completed_segments"]) == (
        "completed", stored(done), 3)
    assert {s["status"] for s in await live_segments(world, document_id)} == {"completed"}
    assert await kq.searchable_document_ids(world.engine, dataset_id) == [str(document_id)]
    assert await kq.next_segment_position(world.engine, document_id) == 4


@exercises(kev.DocumentIndexingPaused, kev.DocumentIndexingResumed, kev.DocumentIndexingFailed,
           kev.DocumentIndexingRequested, kev.DocumentSplit)
async def test_paused_failed_and_retried_indexing(world: World) -> None:
    dataset_id = await new_dataset(world)
    document_id = await new_document(world, dataset_id)
    first = await split(world, dataset_id, document_id, 1, "old a", "old b")

    paused = await world.emit("Document", document_id, kev.DocumentIndexingPaused(
        paused_by=world.actor))
    doc = await world.one(documents, document_id)
    assert (doc["is_paused"], doc["paused_at"], doc["indexing_status"]) == (
        True, stored(paused), "indexing")
    await world.emit("Document", document_id, kev.DocumentIndexingResumed(lane="priority"))
    doc = await world.one(documents, document_id)
    assert (doc["is_paused"], doc["paused_at"]) == (False, None)

    await world.emit("Document", document_id, kev.DocumentSegmentsIndexed(
        attempt=1, segment_ids=first[:1], completed_segments=1))
    failed = await world.emit("Document", document_id, kev.DocumentIndexingFailed(
        attempt=1, error="embedding service unavailable"))
    doc = await world.one(documents, document_id)
    assert (doc["indexing_status"], doc["error"], doc["stopped_at"]) == (
        "error", "embedding service unavailable", stored(failed))

    # A retry starts over: every stage's stamp, the error and the progress are cleared.
    await world.emit("Document", document_id, kev.DocumentIndexingPaused())
    await world.emit("Document", document_id, kev.DocumentIndexingRequested(
        attempt=2, lane="bulk", reason="retry"))
    doc = await world.one(documents, document_id)
    assert {k: doc[k] for k in ("attempt", "indexing_status", "is_paused", "error",
                                "processing_started_at", "parsing_completed_at",
                                "cleaning_completed_at", "splitting_completed_at",
                                "completed_at", "paused_at", "stopped_at",
                                "completed_segments")} == {
        "attempt": 2, "indexing_status": "waiting", "is_paused": False, "error": None,
        "processing_started_at": None, "parsing_completed_at": None,
        "cleaning_completed_at": None, "splitting_completed_at": None, "completed_at": None,
        "paused_at": None, "stopped_at": None, "completed_segments": 0}
    # Still the first attempt's segments until the second one splits...
    assert [s["content"] for s in await live_segments(world, document_id)] == ["old a",
                                                                              "old b"]
    second = await split(world, dataset_id, document_id, 2, "new")
    # ...which replaces them.
    assert [(s["id"], s["content"]) for s in await live_segments(world, document_id)] == [
        (second[0], "new")]
    assert [s["id"] for s in await world.rows(segments)] == second
    doc = await world.one(documents, document_id)
    assert (doc["split_attempt"], doc["total_segments"], doc["word_count"]) == (2, 1, 3)


@exercises(kev.DocumentSourceReplaced)
async def test_source_replaced_shows_the_new_file_and_rules(world: World) -> None:
    dataset_id = await new_dataset(world)
    document_id = await new_document(world, dataset_id, "draft.txt")
    await indexed(world, dataset_id, document_id, "draft")
    before = await world.one(documents, document_id)
    custom = {"mode": "custom", "rules": {"segmentation": {"separator": "\n",
                                                           "max_tokens": 500}}}
    new_source = source("final.txt")
    custom_id = uuid4()
    replaced = await world.emit("Document", document_id, kev.DocumentSourceReplaced(
        name="final.txt", source=new_source, process_rule=custom, process_rule_id=custom_id,
        updated_by=world.actor))
    doc = await world.one(documents, document_id)
    assert (doc["name"], doc["process_rule"], doc["process_rule_id"], doc["updated_at"]) == (
        "final.txt", custom, custom_id, stored(replaced))
    # the file, with who uploaded it and when
    assert doc["source"] == {**new_source.model_dump(mode="json"),
                             "created_by": str(world.actor),
                             "created_at": int(replaced.occurred_at.timestamp())}
    assert (doc["created_at"], doc["position"], doc["batch"]) == (
        before["created_at"], before["position"], before["batch"])


@exercises(kev.DocumentUpdated)
async def test_document_renamed_disabled_enabled_archived(world: World) -> None:
    dataset_id = await new_dataset(world)
    document_id = await new_document(world, dataset_id)
    await indexed(world, dataset_id, document_id, "text")
    admin = uuid4()

    async def flags(**changes: Any) -> tuple[Envelope[kev.DocumentUpdated], RowMapping]:
        doc = await world.one(documents, document_id)
        payload = {"name": doc["name"], "enabled": doc["enabled"], "archived": doc["archived"],
                   "updated_by": admin} | changes
        e = await world.emit("Document", document_id, kev.DocumentUpdated(**payload))
        return e, await world.one(documents, document_id)

    e, doc = await flags(enabled=False)
    assert (doc["enabled"], doc["disabled_at"], doc["disabled_by"], doc["updated_at"]) == (
        False, stored(e), admin, stored(e))
    assert await kq.searchable_document_ids(world.engine, dataset_id) == []
    disabled_at = doc["disabled_at"]
    _, doc = await flags(name="Guide (old)")  # renamed while disabled: still the first time
    assert (doc["name"], doc["enabled"], doc["disabled_at"]) == ("Guide (old)", False,
                                                                disabled_at)
    _, doc = await flags(enabled=True)
    assert (doc["enabled"], doc["disabled_at"], doc["disabled_by"]) == (True, None, None)

    e, doc = await flags(archived=True)
    assert (doc["archived"], doc["archived_at"]) == (True, stored(e))
    assert await kq.searchable_document_ids(world.engine, dataset_id) == []
    _, doc = await flags(name="Guide")  # archived_at only moves when archiving changes
    assert doc["archived_at"] == stored(e)
    _, doc = await flags(archived=False)
    assert (doc["archived"], doc["archived_at"], doc["name"]) == (False, None, "Guide")
    assert await kq.searchable_document_ids(world.engine, dataset_id) == [str(document_id)]


@exercises(kev.DocumentDeleted)
async def test_document_deleted_with_its_segments(world: World) -> None:
    dataset_id = await new_dataset(world)
    gone, kept = await new_document(world, dataset_id), await new_document(world, dataset_id)
    await indexed(world, dataset_id, gone, "a", "b")
    await indexed(world, dataset_id, kept, "c")
    await world.emit("Document", gone, kev.DocumentDeleted(dataset_id=dataset_id,
                                                           source_key="uploads/x"))
    assert await world.row(documents, gone) is None
    assert await world.rows(segments, segments.c.document_id == gone) == []
    assert [s["content"] for s in await live_segments(world, kept)] == ["c"]
    assert await kq.searchable_document_ids(world.engine, dataset_id) == [str(kept)]


@exercises(kev.SegmentsHit)
async def test_retrieval_hits_add_up_per_segment(world: World) -> None:
    dataset_id = await new_dataset(world)
    kept, gone = await new_document(world, dataset_id), await new_document(world, dataset_id)
    first, second = await indexed(world, dataset_id, kept, "alpha", "beta")
    (lost,) = await indexed(world, dataset_id, gone, "gamma")

    async def counts() -> dict[str, int]:
        found = await kq.segments_by_id(world.engine, [first, second, lost])
        page = await kq.list_segments(world.engine, kept, page=1, limit=10, keyword=None,
                                      status=None)
        assert {r["id"]: r["hit_count"] for r in page.items} == {
            i: found[i]["hit_count"] for i in (first, second)}  # both reads agree
        return {found[i]["content"]: found[i]["hit_count"] for i in found}

    assert await counts() == {"alpha": 0, "beta": 0, "gamma": 0}

    def batch(*hits: tuple[UUID, UUID, int]) -> kev.SegmentsHit:
        return kev.SegmentsHit(dataset_id=dataset_id, hits=[
            kev.SegmentHits(document_id=d, segment_id=s, count=n) for d, s, n in hits])

    await world.emit("RetrievalHits", uuid4(), batch((kept, first, 3), (gone, lost, 1)))
    await world.emit("RetrievalHits", uuid4(), batch((kept, first, 2), (kept, second, 1)))
    assert await counts() == {"alpha": 5, "beta": 1, "gamma": 1}
    # a deleted document's hits go with it, and later batches naming it count nothing
    await world.emit("Document", gone, kev.DocumentDeleted(dataset_id=dataset_id,
                                                           source_key="uploads/x"))
    await world.emit("RetrievalHits", uuid4(), batch((gone, lost, 4), (kept, second, 1)))
    assert await counts() == {"alpha": 5, "beta": 2}
    assert [r["segment_id"] for r in await world.rows(segment_hits)] != []
    await world.emit("Dataset", dataset_id, kev.DatasetDeleted(deleted_by=world.actor))
    await world.emit("RetrievalHits", uuid4(), batch((kept, first, 1)))
    assert await world.rows(segment_hits) == []


@exercises(kev.SegmentCreated, kev.SegmentIndexed, kev.SegmentUpdated, kev.SegmentDeleted)
async def test_segments_added_edited_disabled_and_deleted_by_hand(world: World) -> None:
    dataset_id = await new_dataset(world)
    document_id = await new_document(world, dataset_id)
    split_ids = await indexed(world, dataset_id, document_id, "alpha", "beta")  # tokens 1, 2

    async def document_counts() -> tuple[int, int, int, int]:
        doc = await world.one(documents, document_id)
        return (doc["total_segments"], doc["completed_segments"], doc["word_count"],
                doc["tokens"])

    assert await document_counts() == (2, 2, 9, 3)
    added = uuid4()
    created = await world.emit("Segment", added, kev.SegmentCreated(
        dataset_id=dataset_id, document_id=document_id, attempt=1, position=3,
        content="gamma ray", answer="a burst", keywords=["gamma"], word_count=9, tokens=4,
        index_node_hash=content_hash("gamma ray"), created_by=world.actor))
    assert await document_counts() == (3, 3, 18, 7)
    segment = await world.one(segments, added)
    assert {k: segment[k] for k in ("position", "content", "answer", "keywords", "status",
                                    "indexing_at", "completed_at", "created_by", "enabled",
                                    "disabled_at")} == {
        "position": 3, "content": "gamma ray", "answer": "a burst", "keywords": ["gamma"],
        "status": "indexing", "indexing_at": stored(created), "completed_at": None,
        "created_by": world.actor, "enabled": True, "disabled_at": None}

    vectored = await world.emit("Segment", added, kev.SegmentIndexed(
        index_node_hash=content_hash("gamma ray")))
    segment = await world.one(segments, added)
    assert (segment["status"], segment["completed_at"]) == ("completed", stored(vectored))

    async def edit(content: str, enabled: bool = True,
                   children: Sequence[str] = ()) -> Envelope[kev.SegmentUpdated]:
        return await world.emit("Segment", added, kev.SegmentUpdated(
            content=content, answer="a burst", keywords=["gamma"], word_count=len(content),
            tokens=5, index_node_hash=content_hash(content), enabled=enabled,
            child_chunks=[kev.ChildChunkData(id=uuid4(), content=c, position=n,
                                             word_count=len(c), type="customized")
                          for n, c in enumerate(children, start=1)],
            updated_by=world.actor))

    edited = await edit("gamma rays!", children=["gamma", "rays"])
    segment = await world.one(segments, added)
    assert (segment["content"], segment["word_count"], segment["tokens"], segment["status"],
            segment["indexing_at"], segment["completed_at"], segment["updated_at"]) == (
        "gamma rays!", 11, 5, "indexing", stored(edited), None, stored(edited))
    assert [(c["content"], c["type"]) for c in segment["child_chunks"]] == [
        ("gamma", "customized"), ("rays", "customized")]
    assert await document_counts() == (3, 3, 20, 8)
    # The vector of the earlier content lands late: the edited segment is still indexing.
    await world.emit("Segment", added, kev.SegmentIndexed(
        index_node_hash=content_hash("gamma ray")))
    assert (await world.one(segments, added))["status"] == "indexing"
    await world.emit("Segment", added, kev.SegmentIndexed(
        index_node_hash=content_hash("gamma rays!")))
    assert (await world.one(segments, added))["status"] == "completed"

    disabled = await edit("gamma rays!", enabled=False)
    segment = await world.one(segments, added)
    assert (segment["enabled"], segment["disabled_at"]) == (False, stored(disabled))
    enabled_ids = await kq.segments_by_id(world.engine, [added, *split_ids], only_enabled=True)
    assert set(enabled_ids) == set(split_ids)
    await edit("gamma rays!!", enabled=False)  # edited while disabled: disabled_at stays
    assert (await world.one(segments, added))["disabled_at"] == stored(disabled)
    await edit("gamma rays!!")
    segment = await world.one(segments, added)
    assert (segment["enabled"], segment["disabled_at"]) == (True, None)
    found = await kq.segments_by_id(world.engine, [added], only_enabled=True)
    assert found[added]["document_name"] == "guide.txt"

    await world.emit("Segment", split_ids[0], kev.SegmentDeleted(dataset_id=dataset_id,
                                                                 document_id=document_id))
    assert [s["id"] for s in await live_segments(world, document_id)] == [split_ids[1], added]
    assert await document_counts() == (2, 2, 4 + 12, 2 + 5)


# --- knowledge: tags and metadata ------------------------------------------------------------


@exercises(kev.TagCreated, kev.TagRenamed, kev.TagBound, kev.TagUnbound, kev.TagDeleted)
async def test_tags_created_renamed_bound_unbound_and_deleted(world: World) -> None:
    handbook, wiki = await new_dataset(world, "Handbook"), await new_dataset(world, "Wiki")
    hr, it = uuid4(), uuid4()
    created = await world.emit("Tag", hr, kev.TagCreated(name="HR", created_by=world.actor))
    await world.emit("Tag", it, kev.TagCreated(name="IT"))
    tag = await world.one(tags, hr)
    assert (tag["tenant_id"], tag["type"], tag["name"], tag["created_by"],
            tag["created_at"]) == (world.tenant, "knowledge", "HR", world.actor,
                                   stored(created))
    await world.emit("Tag", hr, kev.TagRenamed(name="People", updated_by=world.actor))
    assert (await world.one(tags, hr))["name"] == "People"

    bound = await world.emit("Tag", hr, kev.TagBound(target_id=handbook, created_by=world.actor))
    await world.emit("Tag", hr, kev.TagBound(target_id=handbook, created_by=uuid4()))  # again
    await world.emit("Tag", hr, kev.TagBound(target_id=wiki))
    await world.emit("Tag", it, kev.TagBound(target_id=wiki))

    async def bindings() -> set[tuple[UUID, UUID]]:
        return {(b["tag_id"], b["target_id"]) for b in await world.rows(tag_bindings)}

    assert await bindings() == {(hr, handbook), (hr, wiki), (it, wiki)}
    [first] = await world.rows(tag_bindings, tag_bindings.c.target_id == handbook)
    assert (first["tenant_id"], first["created_by"], first["created_at"]) == (
        world.tenant, world.actor, stored(bound))  # the first binding is kept

    await world.emit("Tag", hr, kev.TagUnbound(target_id=wiki))
    await world.emit("Tag", hr, kev.TagUnbound(target_id=wiki))  # not bound: nothing happens
    assert await bindings() == {(hr, handbook), (it, wiki)}
    await world.emit("Tag", hr, kev.TagBound(target_id=wiki))  # bound again after unbinding
    assert await bindings() == {(hr, handbook), (hr, wiki), (it, wiki)}

    await world.emit("Tag", hr, kev.TagDeleted(deleted_by=world.actor))
    assert await world.row(tags, hr) is None
    assert await bindings() == {(it, wiki)}
    assert {t["name"] for t in await world.rows(tags)} == {"IT"}


@exercises(kev.DatasetMetadataFieldAdded, kev.DatasetMetadataFieldRenamed,
           kev.DatasetMetadataFieldDeleted, kev.DatasetBuiltInFieldsToggled,
           kev.DocumentMetadataUpdated)
async def test_metadata_fields_and_document_values(world: World) -> None:
    dataset_id, other = await new_dataset(world), await new_dataset(world, "Other")
    author, year = uuid4(), uuid4()
    added = await world.emit("Dataset", dataset_id, kev.DatasetMetadataFieldAdded(
        metadata_id=author, name="author", type="string", created_by=world.actor))
    await world.emit("Dataset", dataset_id, kev.DatasetMetadataFieldAdded(
        metadata_id=year, name="year", type="number"))
    field = await world.one(dataset_metadata_fields, author)
    assert {k: field[k] for k in ("tenant_id", "dataset_id", "name", "type", "created_by",
                                  "updated_by", "created_at", "updated_at")} == {
        "tenant_id": world.tenant, "dataset_id": dataset_id, "name": "author",
        "type": "string", "created_by": world.actor, "updated_by": world.actor,
        "created_at": stored(added), "updated_at": stored(added)}

    editor = uuid4()
    renamed = await world.emit("Dataset", dataset_id, kev.DatasetMetadataFieldRenamed(
        metadata_id=author, name="writer", updated_by=editor))
    field = await world.one(dataset_metadata_fields, author)
    assert (field["name"], field["type"], field["updated_by"], field["updated_at"],
            field["created_at"]) == ("writer", "string", editor, stored(renamed), stored(added))
    assert (await world.one(dataset_metadata_fields, year))["name"] == "year"

    guide = await new_document(world, dataset_id, "guide.txt", 1)
    faq = await new_document(world, dataset_id, "faq.txt", 2)
    blank = await new_document(world, dataset_id, "blank.txt", 3)
    elsewhere = await new_document(world, other)
    values = {str(author): "Ada", str(year): 2024}
    tagged = await world.emit("Document", guide, kev.DocumentMetadataUpdated(
        values=values, updated_by=world.actor))
    await world.emit("Document", faq, kev.DocumentMetadataUpdated(values={str(author): "Bob"}))
    # (values keyed by a field id of another dataset: never touched by this one's changes)
    await world.emit("Document", elsewhere, kev.DocumentMetadataUpdated(
        values={str(author): "Eve"}))
    doc = await world.one(documents, guide)
    assert (doc["doc_metadata"], doc["updated_at"]) == (values, stored(tagged))
    await world.emit("Document", guide, kev.DocumentMetadataUpdated(
        values={str(author): "Ada", str(year): 2025.5}))  # the full new values
    assert (await world.one(documents, guide))["doc_metadata"] == {str(author): "Ada",
                                                                   str(year): 2025.5}

    before = {d: (await world.one(documents, d))["updated_at"] for d in (guide, faq, blank)}
    await world.emit("Dataset", dataset_id, kev.DatasetMetadataFieldDeleted(
        metadata_id=author, deleted_by=editor))
    assert await world.row(dataset_metadata_fields, author) is None
    assert [f["id"] for f in await world.rows(dataset_metadata_fields)] == [year]
    after = {d: await world.one(documents, d) for d in (guide, faq, blank)}
    assert {d: r["doc_metadata"] for d, r in after.items()} == {
        guide: {str(year): 2025.5}, faq: {}, blank: {}}
    assert {d: r["updated_at"] for d, r in after.items()} == before  # a tidy-up, not an edit
    assert (await world.one(documents, elsewhere))["doc_metadata"] == {str(author): "Eve"}

    for enabled in (True, False, True):
        await world.emit("Dataset", dataset_id, kev.DatasetBuiltInFieldsToggled(
            enabled=enabled, updated_by=world.actor))
        assert (await world.one(datasets, dataset_id))["built_in_field_enabled"] is enabled
    assert (await world.one(datasets, other))["built_in_field_enabled"] is False


# --- the guard -----------------------------------------------------------------------------------



# --- conversation ------------------------------------------------------------------------------


@exercises(cev.AppModelConfigured, cev.AppSiteConfigured)
async def test_app_model_config_and_site(world: World) -> None:
    app_id = uuid4()
    config_id = app_config_id_for(app_id)
    await world.emit("AppConfig", config_id, cev.AppModelConfigured(
        app_id=app_id, config={"pre_prompt": "one"}, updated_by=world.actor))
    await world.emit("AppConfig", config_id, cev.AppModelConfigured(
        app_id=app_id, config={"pre_prompt": "two"}, updated_by=world.actor))
    assert await cq.app_model_config(world.engine, app_id) == {"pre_prompt": "two"}
    assert await cq.app_model_config(world.engine, uuid4()) is None
    assert await cq.app_site(world.engine, app_id) == {}
    await world.emit("AppConfig", config_id, cev.AppSiteConfigured(
        app_id=app_id, site={"title": "Guide"}, updated_by=world.actor))
    assert await cq.app_site(world.engine, app_id) == {"title": "Guide"}


async def conversation_with_message(w: World, app_id: UUID, user: str = "u1",
                                    query: str = "Hi?") -> tuple[UUID, UUID]:
    conversation_id, message_id = uuid4(), uuid4()
    end_user_id = end_user_id_for(app_id, user)
    await w.emit("Conversation", conversation_id, cev.ConversationStarted(
        app_id=app_id, end_user_id=end_user_id, user=user, mode="chat", name=query,
        inputs={"city": "Oslo"}))
    await w.emit("Conversation", conversation_id, cev.MessageCreated(
        message_id=message_id, task_id=uuid4(), app_id=app_id, end_user_id=end_user_id,
        mode="chat", query=query, inputs={"city": "Oslo"}, config={}))
    return conversation_id, message_id


@exercises(cev.ConversationStarted, cev.MessageCreated, cev.MessageAnswered,
           cev.MessageStopped, cev.MessageFailed)
async def test_conversation_and_its_messages(world: World) -> None:
    app_id = uuid4()
    conversation_id, first = await conversation_with_message(world, app_id)
    row = await world.one(messages, first)
    assert (row["status"], row["answer"], row["query"]) == ("pending", "", "Hi?")
    usage = {"total_tokens": 12, "latency": 0.5}
    resources = [{"position": 1, "document_name": "guide.txt"}]
    await world.emit("Conversation", conversation_id, cev.MessageAnswered(
        message_id=first, answer="Hello.", usage=usage, retriever_resources=resources))
    row = await world.one(messages, first)
    assert (row["status"], row["answer"], row["usage"], row["retriever_resources"],
            row["latency"]) == ("normal", "Hello.", usage, resources, 0.5)

    end_user_id = end_user_id_for(app_id, "u1")
    stopped, failed = uuid4(), uuid4()
    for message_id in (stopped, failed):
        await world.emit("Conversation", conversation_id, cev.MessageCreated(
            message_id=message_id, task_id=uuid4(), app_id=app_id, end_user_id=end_user_id,
            mode="chat", query="More?", inputs={}, config={}))
    await world.emit("Conversation", conversation_id, cev.MessageStopped(
        message_id=stopped, answer="Partial", usage=usage))
    await world.emit("Conversation", conversation_id, cev.MessageFailed(
        message_id=failed, code="completion_request_error", status=400, error="boom"))
    assert (await world.one(messages, stopped))["status"] == "stopped"
    assert [(r["status"], r["error"]) for r in [await world.one(messages, failed)]] == [
        ("error", "boom")]

    assert (await world.one(end_users, end_user_id))["session_id"] == "u1"
    page = await cq.conversation_messages(world.engine, conversation_id, first_id=None, limit=2)
    assert page is not None and [m["id"] for m in page.items] == [stopped, failed]
    assert page.total == 1  # older ones remain
    older = await cq.conversation_messages(world.engine, conversation_id, first_id=stopped,
                                           limit=2)
    assert older is not None and [m["id"] for m in older.items] == [first] and older.total == 0


@exercises(cev.AnnotationCreated, cev.AnnotationUpdated, cev.AnnotationDeleted,
           cev.AnnotationHit)
async def test_annotations_listed_with_keyword_and_hits(world: World) -> None:
    app_id, other_app = uuid4(), uuid4()
    set_id = annotation_set_id_for(app_id)
    ids = [uuid4() for _ in range(3)]
    for annotation_id, (question, answer) in zip(ids, [
            ("Opening hours?", "9 to 5."), ("Where is it?", "Main St 100%"),
            ("Parking?", "Free after 5.")], strict=True):
        await world.emit("AnnotationSet", set_id, cev.AnnotationCreated(
            app_id=app_id, annotation_id=annotation_id, question=question, answer=answer))
    await world.emit("AnnotationSet", annotation_set_id_for(other_app), cev.AnnotationCreated(
        app_id=other_app, annotation_id=uuid4(), question="Opening hours?", answer="Never."))
    rows, total = await cq.list_annotations(world.engine, app_id, "", page=1, limit=2)
    assert [r["id"] for r in rows] == [ids[2], ids[1]] and total == 3  # newest first
    rows, total = await cq.list_annotations(world.engine, app_id, "", page=2, limit=2)
    assert [r["id"] for r in rows] == [ids[0]] and total == 3
    # the keyword matches the question or the answer, case-insensitively; % is literal
    for keyword, expected in (("hours", [ids[0]]), ("after 5", [ids[2]]), ("100%", [ids[1]]),
                              ("%", [ids[1]]), ("nothing", [])):
        rows, total = await cq.list_annotations(world.engine, app_id, keyword, 1, 20)
        assert [r["id"] for r in rows] == expected and total == len(expected), keyword

    await world.emit("AnnotationSet", set_id, cev.AnnotationUpdated(
        app_id=app_id, annotation_id=ids[0], question="When open?", answer="9 to 6."))
    conversation_id, message_id = await conversation_with_message(world, app_id)
    for _ in range(2):
        await world.emit("Conversation", conversation_id, cev.AnnotationHit(
            app_id=app_id, annotation_id=ids[0], message_id=message_id, question="Hours?",
            score=0.97))
    row = await cq.annotation(world.engine, app_id, ids[0])
    assert row is not None and (row["question"], row["answer"], row["hit_count"]) == (
        "When open?", "9 to 6.", 2)
    assert await cq.annotation(world.engine, other_app, ids[0]) is None  # another app's
    await world.emit("AnnotationSet", set_id, cev.AnnotationDeleted(app_id=app_id,
                                                                    annotation_id=ids[0]))
    assert await cq.annotation(world.engine, app_id, ids[0]) is None
    assert (await cq.list_annotations(world.engine, app_id, "", 1, 20))[1] == 2
    # hits are other partitions' events: one applied after the deletion stays out, one
    # applied before its annotation's creation counts
    late, early = uuid4(), uuid4()
    for annotation_id in (ids[0], late):
        await world.emit("Conversation", conversation_id, cev.AnnotationHit(
            app_id=app_id, annotation_id=annotation_id, message_id=message_id,
            question="Hours?", score=0.97))
    await world.emit("AnnotationSet", set_id, cev.AnnotationCreated(
        app_id=app_id, annotation_id=late, question="Late?", answer="Yes."))
    row = await cq.annotation(world.engine, app_id, late)
    assert row is not None and row["hit_count"] == 1
    await world.emit("AnnotationSet", set_id, cev.AnnotationCreated(
        app_id=app_id, annotation_id=early, question="Early?", answer="No."))
    assert (await cq.annotation(world.engine, app_id, early))["hit_count"] == 0  # type: ignore[index]
    assert [r["annotation_id"] for r in await world.rows(annotation_hits)] == [late]


@exercises(cev.AnnotationReplyRequested, cev.AnnotationReplyJobStarted,
           cev.AnnotationReplyJobEnded)
async def test_annotation_reply_jobs_and_setting(world: World) -> None:
    app_id = uuid4()
    set_id = annotation_set_id_for(app_id)

    async def request(action: str, threshold: float = 0.8) -> UUID:
        job_id = uuid4()
        await world.emit("AnnotationSet", set_id, cev.AnnotationReplyRequested(
            app_id=app_id, job_id=job_id, action=action, score_threshold=threshold,
            embedding_provider_name="openai_api_compatible", embedding_model_name="bge-m3"))
        return job_id

    async def status(action: str, job_id: UUID) -> tuple[str, str] | None:
        job = await cq.annotation_reply_job(world.engine, app_id, action, job_id)
        return None if job is None else (job["status"], job["error"])

    enable = await request("enable")
    assert await status("enable", enable) == ("waiting", "")
    assert await status("disable", enable) is None  # asked under the other action
    await world.emit("AnnotationSet", set_id, cev.AnnotationReplyJobStarted(app_id=app_id,
                                                                            job_id=enable))
    assert await status("enable", enable) == ("processing", "")
    assert await cq.annotation_reply_setting(world.engine, app_id) is None  # not yet on
    await world.emit("AnnotationSet", set_id, cev.AnnotationReplyJobEnded(
        app_id=app_id, job_id=enable, status="completed", collection="annotations_built"))
    assert await status("enable", enable) == ("completed", "")
    setting = await cq.annotation_reply_setting(world.engine, app_id)
    assert setting is not None and (
        setting["score_threshold"], setting["embedding_model_name"], setting["collection"]
    ) == (0.8, "bge-m3", "annotations_built")

    failed = await request("enable", threshold=0.5)
    await world.emit("AnnotationSet", set_id, cev.AnnotationReplyJobEnded(
        app_id=app_id, job_id=failed, status="error", error="no such model"))
    assert await status("enable", failed) == ("error", "no such model")
    setting = await cq.annotation_reply_setting(world.engine, app_id)
    assert setting is not None and setting["score_threshold"] == 0.8  # unchanged

    disable = await request("disable")
    await world.emit("AnnotationSet", set_id, cev.AnnotationReplyJobEnded(
        app_id=app_id, job_id=disable, status="completed"))
    assert await cq.annotation_reply_setting(world.engine, app_id) is None


@exercises(cev.FileUploaded, cev.FileDeleted)
async def test_file_uploaded_and_deleted(world: World) -> None:
    app_id, file_id = uuid4(), uuid4()
    await world.emit("UploadFile", file_id, cev.FileUploaded(
        app_id=app_id, end_user_id=end_user_id_for(app_id, "ann"), name="cat.png", size=3,
        extension="png", mime_type="image/png", key="upload_files/x.png"))
    row = await cq.upload_file(world.engine, app_id, file_id)
    assert row is not None and (row["name"], row["size"], row["key"]) == (
        "cat.png", 3, "upload_files/x.png")
    assert await cq.upload_file(world.engine, uuid4(), file_id) is None  # another app's
    assert await cq.app_leftovers(world.engine, app_id) == ([], [file_id])
    await world.emit("UploadFile", file_id, cev.FileDeleted())
    assert await cq.upload_file(world.engine, app_id, file_id) is None


@exercises(cev.ConversationRenamed, cev.ConversationDeleted, cev.MessageFeedbackGiven)
async def test_renamed_feedback_and_deleted(world: World) -> None:
    app_id = uuid4()
    conversation_id, message_id = await conversation_with_message(world, app_id)
    other, _ = await conversation_with_message(world, app_id, query="Second")
    await world.emit("Conversation", conversation_id, cev.ConversationRenamed(name="Trip"))
    assert (await world.one(conversations, conversation_id))["name"] == "Trip"
    listed = await cq.list_conversations(world.engine, app_id, end_user_id_for(app_id, "u1"),
                                         last_id=None, limit=1, sort_by="-updated_at")
    assert listed is not None and [c["id"] for c in listed.items] == [conversation_id]
    assert listed.total == 1
    rest = await cq.list_conversations(world.engine, app_id, end_user_id_for(app_id, "u1"),
                                       last_id=conversation_id, limit=5, sort_by="-updated_at")
    assert rest is not None and [c["id"] for c in rest.items] == [other]

    await world.emit("Conversation", conversation_id, cev.MessageFeedbackGiven(
        message_id=message_id, rating="like", content="nice"))
    feedbacks = await cq.app_feedbacks(world.engine, app_id, page=1, limit=10)
    assert [(f["id"], f["feedback_rating"]) for f in feedbacks.items] == [(message_id, "like")]
    await world.emit("Conversation", conversation_id, cev.MessageFeedbackGiven(
        message_id=message_id, rating=None))
    assert (await cq.app_feedbacks(world.engine, app_id, page=1, limit=10)).total == 0

    await world.emit("Conversation", conversation_id, cev.ConversationDeleted())
    assert await world.row(conversations, conversation_id) is None
    assert await world.row(messages, message_id) is None
    assert await world.row(conversations, other) is not None


@pytest.mark.parametrize("event_type", [pytest.param(t, id=t.__name__) for t in sorted(
    PROJECTION.handlers, key=lambda t: t.__name__)])
def test_every_projector_is_exercised(event_type: type[EventPayload]) -> None:
    assert SCENARIOS.get(event_type), (
        f"no test in {__name__} applies {event_type.__name__}: add it to a scenario "
        "and name it in that test's @exercises(...)")


def test_scenarios_name_only_projected_events() -> None:
    assert set(SCENARIOS) <= set(PROJECTION.handlers)
    assert not set(SCENARIOS) & PROJECTION.ignored
