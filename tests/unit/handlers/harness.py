"""How command handlers are tested, in process (InMemoryEventStore, no servers).

Each command is run the way a command worker runs it (`execute` on a command envelope) and
checked for what a user would notice: the outcome and its result, the events recorded, and
the typed rejection (Dify's error code and HTTP status) for the important bad cases:
another workspace's ids, ids of another kind of aggregate, duplicates, invalid states.

A test declares the command types it exercises with `@covers(...)`; the `world` fixture
(conftest.py) fails the test if it did not run them, and test_coverage.py fails for a
registered command type that no test of any context covers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID, uuid4

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
from schemas.conversation.naming import (
    annotation_set_id_for,
    app_config_id_for,
)
from schemas.knowledge import commands as kc
from schemas.knowledge import events as ke
from schemas.knowledge.naming import (
    child_id_for,
    content_hash,
    segment_id_for,
)
from schemas.platform import commands as pc
from schemas.platform.naming import SETUP_ID

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
    for name in ("run_id", "conversation_id", "file_id", "document_id", "tag_id", "target_id",
                 "dataset_id", "app_id", "key_id", "workspace_id", "batch_id"):
        value = getattr(payload, name, None)
        if isinstance(value, UUID):
            return value
    # A command of a context not named above travels under its first id.
    for name, value in payload:
        if name.endswith("_id") and isinstance(value, UUID):
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
