"""The indexing job's state machine, in process: the real command handlers, indexing job,
segment indexer and cleanup handlers over InMemoryEventStore, LocalStorage on a tmp dir,
the real MiniLM embeddings (each distinct text embedded once per module: the tests index
the same paragraphs over and over) and InMemoryVectorStore (as `vectors` and `keywords`).

Crashes, pauses, new attempts and deletions are injected at chosen points through hooks on
the storage, vector store and event store (each hook fires once); a crash is an exception
out of the job, after which the same trigger event is delivered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from uuid import UUID, uuid4

import pytest

from adapters.embeddings.local_minilm import LocalMiniLM
from adapters.embeddings.models import LOCAL_PROVIDER, EmbeddingModels
from adapters.storage.base import FileNotFoundInStorage
from adapters.storage.local import LocalStorage
from adapters.vector.base import VectorDocument
from adapters.vector.memory import InMemoryVectorStore
from bootstrap import ASSEMBLY
from commands.executor import execute
from commands.knowledge.aggregates import Document, Segment
from events.envelope import Envelope
from events.memory_store import InMemoryEventStore
from events.store import CommandOutcome
from schemas.base import CommandEnvelope, CommandPayload, EventPayload
from schemas.knowledge import commands as kc
from schemas.knowledge import events as ev
from schemas.knowledge.naming import (
    dataset_prefix,
    document_prefix,
    keyword_collection,
    vector_collection,
)
from tests.process_rules import HIERARCHICAL_RULE, PARAGRAPH_RULE
from workers.knowledge import cleanup, indexing
from workers.knowledge.indexing import (
    IndexingDeps,
    fail_document,
    index_segment,
    run_indexing_job,
)

PARAGRAPHS = [
    "The lighthouse keeper climbs the spiral stairs every evening to light the lamp.",
    "Sourdough bread needs a lively starter, flour, water, salt and a long slow rise.",
    "The comet's tail always points away from the sun because of the solar wind.",
    "Penalty shootouts decide football matches that are still tied after extra time.",
]
TEXT = "\n\n".join(PARAGRAPHS)
NEW_PARAGRAPHS = [
    "Glaciers carve deep valleys as they creep downhill over thousands of years.",
    "A violin's tone depends on the spruce top, the maple back and the varnish.",
]
NESTED_PARAGRAPHS = [
    "Bees dance to show the hive where flowers are. The angle of the dance gives the way",
    "Tides rise twice a day. The moon pulls the oceans toward itself",
]

# What the job records on the document, in order, for a clean run of one attempt.
JOB_EVENTS = ["DocumentProcessingStarted", "DocumentParsed", "DocumentCleaned",
              "DocumentSplit", "DocumentSegmentsIndexed", "DocumentIndexingCompleted"]
CLEAN_RUN = ["DocumentCreated", "DocumentIndexingRequested", *JOB_EVENTS]
# The storage key each stage reads first (the source, then the previous stage's output).
STAGE_INPUT = {"parsing": "source/notes.txt", "cleaning": "extracted.txt",
               "splitting": "cleaned.txt", "indexing": "chunks.json"}

Trigger = Envelope[ev.DocumentIndexingRequested | ev.DocumentIndexingResumed]
Technique = Literal["high_quality", "economy"]
Action = Literal["pause", "resume", "retry", "reindex"]
Hook = Callable[[], Awaitable[None]]


def collection_for(dataset: UUID, economy: bool) -> str:
    """Where the World's datasets (default model: MiniLM) keep their chunks."""
    return (keyword_collection(dataset) if economy
            else vector_collection(dataset, LOCAL_PROVIDER, LocalMiniLM.MODEL_NAME))


class Crash(Exception):
    """The worker process dying at this point."""


async def crash() -> None:
    raise Crash()


# -- infrastructure with hooks ---------------------------------------------------------


@dataclass
class _Hook:
    op: str
    key_suffix: str
    after: bool
    action: Hook


class HookedStorage(LocalStorage):
    """The real local storage; `on(...)` runs an action once, before or after an operation
    on a key ending with `key_suffix`."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=False)
        self._hooks: list[_Hook] = []

    def on(self, op: str, key_suffix: str, action: Hook, *, after: bool = False) -> None:
        self._hooks.append(_Hook(op, key_suffix, after, action))

    async def _fire(self, op: str, key: str, after: bool) -> None:
        for hook in list(self._hooks):
            if hook.op == op and key.endswith(hook.key_suffix) and hook.after == after:
                self._hooks.remove(hook)
                await hook.action()

    async def save(self, key: str, data: bytes) -> None:
        await self._fire("save", key, after=False)
        await super().save(key, data)
        await self._fire("save", key, after=True)

    async def load(self, key: str) -> bytes:
        await self._fire("load", key, after=False)
        data = await super().load(key)
        await self._fire("load", key, after=True)
        return data

    def keys(self, prefix: str = "") -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                if p.is_file() and p.relative_to(self.root).as_posix().startswith(prefix)}


class HookedVectorStore(InMemoryVectorStore):
    """Logs every write (collection, ids); `on_add` runs an action once around a write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, list[str]]] = []
        self._hooks: list[tuple[bool, Hook]] = []

    def on_add(self, action: Hook, *, after: bool = False) -> None:
        self._hooks.append((after, action))

    async def _fire(self, after: bool) -> None:
        for hook in list(self._hooks):
            if hook[0] == after:
                self._hooks.remove(hook)
                await hook[1]()

    async def add_texts(self, collection: str, documents: Sequence[VectorDocument]) -> None:
        await self._fire(after=False)
        await super().add_texts(collection, documents)
        self.writes.append((collection, [d.id for d in documents]))
        await self._fire(after=True)


class HookedEventStore(InMemoryEventStore):
    """`crash_after(n)`: the n-th append from now on is stored, then the caller dies."""

    def __init__(self) -> None:
        super().__init__()
        self._appends_left: int | None = None

    def crash_after(self, appends: int | None) -> None:
        self._appends_left = appends

    def append(self, events: Sequence[Envelope[EventPayload]], outcome: CommandOutcome | None = None
               ) -> int:
        position = super().append(events, outcome)
        if self._appends_left is not None:
            self._appends_left -= 1
            if self._appends_left == 0:
                self._appends_left = None
                raise Crash()
        return position


class OncePerText:
    """The real MiniLM model; a text it has embedded before gets the same vector again
    without another forward pass (the model is deterministic), which keeps this module
    fast."""

    def __init__(self, model: LocalMiniLM) -> None:
        self.model = model
        self._vectors: dict[str, list[float]] = {}

    @property
    def model_name(self) -> str:
        return self.model.model_name

    @property
    def dimensions(self) -> int:
        return self.model.dimensions

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            vectors = await self.model.embed_documents(missing)
            self._vectors.update(zip(missing, vectors, strict=True))
        return [list(self._vectors[t]) for t in texts]

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_documents([text]))[0]

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)


# -- the world: one workspace, driven through the real command handlers ----------------


class World:
    def __init__(self, root: Path, embeddings: OncePerText) -> None:
        self.store = HookedEventStore()
        self.storage = HookedStorage(root)
        self.vectors = HookedVectorStore()
        self.deps = IndexingDeps(store=self.store, storage=self.storage,
                                 embedding_models=EmbeddingModels.of(LOCAL_PROVIDER, embeddings),
                                 vectors=self.vectors, keywords=self.vectors)
        self.embeddings = embeddings
        self.tenant, self.actor = uuid4(), uuid4()
        self.technique: dict[UUID, Technique] = {}

    # commands

    def command(self, payload: CommandPayload, aggregate_id: UUID) -> CommandOutcome:
        return execute(self.store, ASSEMBLY.handlers, CommandEnvelope.of(
            payload, aggregate_id=aggregate_id, tenant_id=self.tenant, actor_id=self.actor,
            correlation_id=uuid4()))

    def run(self, payload: CommandPayload, aggregate_id: UUID) -> None:
        outcome = self.command(payload, aggregate_id)
        assert outcome.status == "accepted", outcome.error

    def dataset(self, technique: Technique = "high_quality") -> UUID:
        dataset = uuid4()
        self.run(kc.CreateDataset(dataset_id=dataset, name=f"ds-{dataset}",
                                  indexing_technique=technique, retrieval_model={}), dataset)
        self.technique[dataset] = technique
        return dataset

    async def document(self, dataset: UUID, text: str = TEXT, *, filename: str = "notes.txt",
                       data: bytes | None = None, rule: dict[str, Any] | None = None,
                       doc_form: str = "text_model") -> UUID:
        document = uuid4()
        key = await self.upload(dataset, document, filename, text.encode() if data is None
                                else data)
        self.run(kc.CreateDocument(
            dataset_id=dataset, document_id=document, name=filename, position=1, batch="b",
            source=source(key, filename), doc_form=doc_form,
            process_rule=rule or PARAGRAPH_RULE,
            process_rule_id=uuid4(), indexing_technique=self.technique[dataset],
            lane="priority"), document)
        return document

    async def upload(self, dataset: UUID, document: UUID, filename: str, data: bytes) -> str:
        key = f"{document_prefix(dataset, document)}source/{filename}"
        await LocalStorage.save(self.storage, key, data)  # an upload, not job work: no hooks
        return key

    async def replace_text(self, dataset: UUID, document: UUID, text: str) -> None:
        """update-by-text: new content, a new attempt."""
        filename = f"v{uuid4().hex[:6]}.txt"
        key = await self.upload(dataset, document, filename, text.encode())
        self.run(kc.ReplaceDocumentSource(dataset_id=dataset, document_id=document,
                                          source=source(key, filename), lane="priority"),
                 document)

    def control(self, dataset: UUID, document: UUID, action: Action) -> CommandOutcome:
        return self.command(kc.ControlDocumentIndexing(
            dataset_id=dataset, document_ids=[document], action=action), document)

    async def delete_document(self, dataset: UUID, document: UUID) -> None:
        """DeleteDocument, and the cleanup processor reacting to it."""
        self.run(kc.DeleteDocument(dataset_id=dataset, document_id=document), document)
        deleted = cast(Envelope[ev.DocumentDeleted], self.last_event(document))
        await cleanup.document_deleted(self.deps, deleted)

    async def delete_dataset(self, dataset: UUID) -> None:
        self.run(kc.DeleteDataset(dataset_id=dataset), dataset)
        deleted = cast(Envelope[ev.DatasetDeleted], self.last_event(dataset))
        await cleanup.dataset_deleted(self.deps, deleted)

    # workers

    def trigger(self, document: UUID) -> Trigger:
        """The latest message for the indexing lanes about this document."""
        triggers = [e for e in self.store.load(document)
                    if isinstance(e.payload, ev.DocumentIndexingRequested
                                  | ev.DocumentIndexingResumed)]
        return cast(Trigger, triggers[-1])

    async def index(self, document: UUID, trigger: Trigger | None = None) -> None:
        await run_indexing_job(self.deps, trigger or self.trigger(document))

    async def index_segment(self, segment: UUID) -> None:
        """Deliver the segment's latest SegmentCreated / SegmentUpdated message."""
        event = [e for e in self.store.load(segment)
                 if isinstance(e.payload, ev.SegmentCreated | ev.SegmentUpdated)][-1]
        await index_segment(self.deps,
                            cast(Envelope[ev.SegmentCreated | ev.SegmentUpdated], event))

    # what a user would see

    def last_event(self, aggregate_id: UUID) -> Envelope[EventPayload]:
        return self.store.load(aggregate_id)[-1]

    def types(self, document: UUID) -> list[str]:
        return [e.type for e in self.store.load(document)]

    def doc(self, document: UUID) -> Document:
        return Document.replay(document, self.store.load(document))

    def segment_created(self, document: UUID) -> list[Envelope[ev.SegmentCreated]]:
        """SegmentCreated of every attempt of the document, in order."""
        return [cast(Envelope[ev.SegmentCreated], e)
                for e in self.store.read_from(0, self.store.max_position())
                if isinstance(e.payload, ev.SegmentCreated) and e.payload.document_id == document]

    def segments(self, document: UUID) -> list[Segment]:
        """The document's live segments (its current split), in position order."""
        split = self.doc(document).split_attempt
        live = [Segment.replay(e.aggregate_id, self.store.load(e.aggregate_id))
                for e in self.segment_created(document) if e.payload.attempt == split]
        return [s for s in live if not s.deleted]

    def units(self, dataset: UUID, document: UUID | None = None) -> list[VectorDocument]:
        economy = self.technique[dataset] == "economy"
        units = self.vectors.documents(collection_for(dataset, economy))
        return [u for u in units if document is None
                or u.metadata["document_id"] == str(document)]

    def error(self, document: UUID) -> str:
        failed = [e.payload for e in self.store.load(document)
                  if isinstance(e.payload, ev.DocumentIndexingFailed)]
        assert failed, "the document did not fail"
        return failed[-1].error


def source(key: str, filename: str) -> ev.SourceFile:
    return ev.SourceFile(id=uuid4(), key=key, name=filename, size=1,
                         extension=filename.rpartition(".")[2])


def assert_indexed(w: World, dataset: UUID, document: UUID, contents: list[str]) -> None:
    """Completed, with exactly these segments and one index entry per segment (per child
    chunk for hierarchical ones): nothing missing, nothing extra, nothing stale."""
    assert w.doc(document).status == "completed"
    segments = w.segments(document)
    assert [s.data.content for s in segments] == contents
    expected: dict[str, tuple[str, str]] = {}  # unit id -> (segment id, text)
    for s in segments:
        if not s.data.enabled:
            continue
        for child in s.data.child_chunks:
            expected[str(child.id)] = (str(s.id), child.content)
        if not s.data.child_chunks:
            expected[str(s.id)] = (str(s.id), s.data.content)
    units = w.units(dataset, document)
    assert {u.id: (u.metadata["segment_id"], u.text) for u in units} == expected
    economy = w.technique[dataset] == "economy"
    for unit in units:
        assert unit.metadata["dataset_id"] == str(dataset)
        if economy:
            assert unit.vector is None
        else:
            assert unit.vector is not None and len(unit.vector) == w.embeddings.dimensions


def assert_clean_attempt(w: World, document: UUID) -> None:
    """The current attempt's segments were created once and each indexed exactly once."""
    doc = w.doc(document)
    created = [e.aggregate_id for e in w.segment_created(document)
               if e.payload.attempt == doc.attempt]
    indexed = [s for e in w.store.load(document)
               if isinstance(e.payload, ev.DocumentSegmentsIndexed)
               and e.payload.attempt == doc.attempt for s in e.payload.segment_ids]
    assert len(created) == len(set(created)) == doc.total_segments
    assert sorted(indexed) == sorted(created)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def embeddings() -> OncePerText:
    model = LocalMiniLM()
    await model.embed_documents(["warm up"])  # loads the weights once for the module
    return OncePerText(model)


@pytest.fixture
def w(tmp_path: Path, embeddings: OncePerText) -> World:
    return World(tmp_path / "storage", embeddings)


# -- a clean run -------------------------------------------------------------------------


async def test_created_document_walks_every_stage_to_completed(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    trigger = w.trigger(document)
    await w.index(document)

    assert w.types(document) == CLEAN_RUN
    assert_indexed(w, dataset, document, PARAGRAPHS)
    assert_clean_attempt(w, document)
    doc = w.doc(document)
    assert (doc.total_segments, doc.split_attempt) == (4, 1)
    # The job's events are caused by the message it handled.
    for event in w.store.load(document)[2:]:
        assert (event.causation_id, event.correlation_id) == (trigger.event_id,
                                                             trigger.correlation_id)
    # Every stage left its output under the document's prefix.
    base = f"{document_prefix(dataset, document)}indexing/1/"
    assert w.storage.keys(base) == {base + n for n in ("extracted.txt", "cleaned.txt",
                                                        "chunks.json")}
    # And the vectors are the real ones: each paragraph is found by its own topic.
    collection = collection_for(dataset, False)
    query = await w.embeddings.embed_query("when does a comet's tail point away from the sun?")
    hits = await w.vectors.search_by_vector(collection, query, top_k=1)
    assert hits[0].text == PARAGRAPHS[2]


async def test_hierarchical_document_embeds_its_child_chunks(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset, "\n\n".join(NESTED_PARAGRAPHS),
                                rule=HIERARCHICAL_RULE, doc_form="hierarchical_model")
    await w.index(document)

    assert_indexed(w, dataset, document, NESTED_PARAGRAPHS)
    segments = w.segments(document)
    assert [len(s.data.child_chunks) for s in segments] == [2, 2]
    # Children are what is searched; parents have no entries of their own.
    assert {u.id for u in w.units(dataset)} == {str(c.id) for s in segments
                                                for c in s.data.child_chunks}


@pytest.mark.parametrize("technique", ["economy", "high_quality"])
async def test_economy_gets_keyword_entries_high_quality_gets_vectors(
    w: World, technique: Technique
) -> None:
    dataset = w.dataset(technique)
    document = await w.document(dataset)
    await w.index(document)

    assert_indexed(w, dataset, document, PARAGRAPHS)
    economy = technique == "economy"
    assert w.vectors.collections() == {collection_for(dataset, economy): 0 if economy else 384}
    hits = await w.vectors.search_by_full_text(collection_for(dataset, economy), "sourdough", 3)
    assert [h.text for h in hits] == [PARAGRAPHS[1]]


async def test_two_deliveries_at_once_leave_one_copy(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    trigger = w.trigger(document)
    await asyncio.gather(w.index(document, trigger), w.index(document, trigger))

    assert w.types(document) == CLEAN_RUN
    assert_indexed(w, dataset, document, PARAGRAPHS)
    assert_clean_attempt(w, document)


async def test_a_duplicate_delivery_splitting_alongside_writes_the_same_segments(
    w: World,
) -> None:
    # Delivery B splits while delivery A records its split (and then dies); B's chunks.json
    # overwrites A's after A's segments were recorded, and B goes on indexing from it. The
    # segment ids are derived from (document, attempt, position), so they agree.
    dataset = w.dataset()
    document = await w.document(dataset)
    trigger = w.trigger(document)

    async def delivery_a() -> None:
        w.storage.on("load", "chunks.json", crash)  # A dies right after recording its split
        with pytest.raises(Crash):
            await w.index(document, trigger)

    w.storage.on("load", "cleaned.txt", delivery_a, after=True)
    await w.index(document, trigger)  # delivery B

    assert w.types(document) == CLEAN_RUN
    assert_indexed(w, dataset, document, PARAGRAPHS)
    assert_clean_attempt(w, document)


async def test_running_the_same_job_again_changes_nothing(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    await w.index(document)
    position, units = w.store.max_position(), w.units(dataset)
    files = {k: (w.storage.root / k).stat().st_mtime_ns for k in w.storage.keys()}

    await w.index(document)  # the message redelivered
    await w.index(document)

    assert w.store.max_position() == position
    assert w.units(dataset) == units
    assert {k: (w.storage.root / k).stat().st_mtime_ns for k in w.storage.keys()} == files


# -- crashes: resume from the recorded stage, one copy of everything ------------------------


@pytest.mark.parametrize(("commits", "stage"), [
    (1, "parsing"), (2, "cleaning"), (3, "splitting"), (4, "indexing"), (5, "indexing"),
    (6, "indexing"), (7, "completed"),
])
async def test_crash_after_a_stage_is_recorded_resumes_there(
    w: World, monkeypatch: pytest.MonkeyPatch, commits: int, stage: str
) -> None:
    monkeypatch.setattr(indexing, "EMBED_BATCH", 2)  # two batches of two segments
    dataset = w.dataset()
    document = await w.document(dataset)
    w.store.crash_after(commits)
    with pytest.raises(Crash):
        await w.index(document)
    assert w.doc(document).status == stage
    w.vectors.writes.clear()

    await w.index(document)  # the message redelivered

    events = [*CLEAN_RUN[:-1], "DocumentSegmentsIndexed", CLEAN_RUN[-1]]  # two batches
    assert w.types(document) == events
    assert_indexed(w, dataset, document, PARAGRAPHS)
    assert_clean_attempt(w, document)
    # Recorded batches are not embedded again.
    rewritten = [i for _, ids in w.vectors.writes for i in ids]
    assert len(rewritten) == {1: 4, 2: 4, 3: 4, 4: 4, 5: 2, 6: 0, 7: 0}[commits]


@pytest.mark.parametrize("point", ["extracted.txt", "cleaned.txt", "chunks.json", "vectors"])
async def test_crash_after_the_work_before_the_record_redoes_the_stage(
    w: World, point: str
) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    if point == "vectors":
        w.vectors.on_add(crash, after=True)
    else:
        w.storage.on("save", point, crash, after=True)
    with pytest.raises(Crash):
        await w.index(document)
    stage = {"extracted.txt": "parsing", "cleaned.txt": "cleaning",
             "chunks.json": "splitting", "vectors": "indexing"}[point]
    assert w.doc(document).status == stage

    await w.index(document)

    assert w.types(document) == CLEAN_RUN
    assert_indexed(w, dataset, document, PARAGRAPHS)
    assert_clean_attempt(w, document)
    base = f"{document_prefix(dataset, document)}indexing/1/"
    assert w.storage.keys(document_prefix(dataset, document)) == {
        f"{document_prefix(dataset, document)}source/notes.txt",
        *(base + n for n in ("extracted.txt", "cleaned.txt", "chunks.json"))}


async def test_storage_failure_is_retried_by_the_bus_not_recorded(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)

    async def unavailable() -> None:
        raise OSError("storage unavailable")

    w.storage.on("load", "cleaned.txt", unavailable)
    with pytest.raises(OSError):
        await w.index(document)  # transient: the bus redelivers
    assert w.doc(document).status == "splitting"
    await w.index(document)
    assert_indexed(w, dataset, document, PARAGRAPHS)


# -- pause / resume ----------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["parsing", "cleaning", "splitting", "indexing"])
async def test_pause_stops_the_job_and_resume_continues(w: World, stage: str) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)

    async def pause() -> None:
        assert w.control(dataset, document, "pause").status == "accepted"

    w.storage.on("load", STAGE_INPUT[stage], pause)
    await w.index(document)  # stops quietly: StaleWork

    doc = w.doc(document)
    assert (doc.status, doc.paused) == (stage, True)
    assert w.types(document)[-1] == "DocumentIndexingPaused"
    position = w.store.max_position()
    await w.index(document, w.trigger(document))  # the original message again: still paused
    assert w.store.max_position() == position
    assert w.control(dataset, document, "pause").status == "rejected"

    assert w.control(dataset, document, "resume").status == "accepted"
    assert w.types(document)[-1] == "DocumentIndexingResumed"
    await w.index(document)  # the DocumentIndexingResumed message

    assert_indexed(w, dataset, document, PARAGRAPHS)
    assert_clean_attempt(w, document)
    done = CLEAN_RUN.index({"parsing": "DocumentProcessingStarted", "cleaning": "DocumentParsed",
                            "splitting": "DocumentCleaned", "indexing": "DocumentSplit"}[stage])
    assert w.types(document) == [*CLEAN_RUN[:done + 1], "DocumentIndexingPaused",
                                 "DocumentIndexingResumed", *CLEAN_RUN[done + 1:]]
    assert w.control(dataset, document, "resume").status == "rejected"


async def test_paused_before_the_job_starts_nothing_runs(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    assert w.control(dataset, document, "pause").status == "accepted"
    await w.index(document, w.trigger(document))
    assert w.types(document) == ["DocumentCreated", "DocumentIndexingRequested",
                                 "DocumentIndexingPaused"]
    assert w.storage.keys(f"{document_prefix(dataset, document)}indexing/") == set()


# -- new attempts supersede old ones ---------------------------------------------------------


@pytest.mark.parametrize("stage", ["parsing", "splitting", "indexing"])
async def test_update_supersedes_the_running_attempt(w: World, stage: str) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    old_trigger = w.trigger(document)

    async def update() -> None:
        await w.replace_text(dataset, document, "\n\n".join(NEW_PARAGRAPHS))

    if stage == "indexing":
        w.vectors.on_add(update)  # attempt 1 writes its vectors, then finds out
    else:
        w.storage.on("load", STAGE_INPUT[stage], update)
    await w.index(document, old_trigger)  # stops: StaleWork

    doc = w.doc(document)
    assert (doc.attempt, doc.status) == (2, "waiting")
    await w.index(document)  # attempt 2's message
    assert_indexed(w, dataset, document, NEW_PARAGRAPHS)  # no vector of attempt 1 is left
    assert_clean_attempt(w, document)

    position, units = w.store.max_position(), w.units(dataset)
    await w.index(document, old_trigger)  # attempt 1's message, redelivered late
    assert (w.store.max_position(), w.units(dataset)) == (position, units)


async def test_superseded_attempt_writing_after_its_successor_finished_leaves_nothing(
    w: World,
) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    old_trigger = w.trigger(document)

    async def update_and_index() -> None:  # attempt 1 is embedding meanwhile
        await w.replace_text(dataset, document, "\n\n".join(NEW_PARAGRAPHS))
        await w.index(document)

    w.vectors.on_add(update_and_index)
    await w.index(document, old_trigger)  # then writes attempt 1's vectors, and stops

    assert_indexed(w, dataset, document, NEW_PARAGRAPHS)
    assert_clean_attempt(w, document)


async def test_reindex_replaces_the_previous_attempt(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    await w.index(document)
    old_units = {u.id for u in w.units(dataset)}
    assert w.control(dataset, document, "retry").status == "accepted"  # completed: allowed

    await w.index(document)

    assert_indexed(w, dataset, document, PARAGRAPHS)
    assert_clean_attempt(w, document)
    assert not old_units & {u.id for u in w.units(dataset)}  # new ids; the old ones are gone
    assert w.types(document) == [*CLEAN_RUN, "DocumentIndexingRequested", *JOB_EVENTS]


async def test_a_running_document_cannot_be_retried_only_updated(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    assert w.control(dataset, document, "reindex").status == "rejected"


# -- permanent failures ----------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "data", "rule", "reason"), [
    ("program.exe", b"MZ\x90\x00binary", None, "unsupported file type"),
    ("report.pdf", b"%PDF-1.7 this is not really a PDF", None, "could not read report.pdf"),
    ("notes.txt", TEXT.encode(), {"mode": "bogus"}, "process_rule.mode"),
])
async def test_unusable_input_marks_the_document_error_without_retries(
    w: World, filename: str, data: bytes, rule: dict[str, Any] | None, reason: str
) -> None:
    dataset = w.dataset()
    document = await w.document(dataset, filename=filename, data=data, rule=rule)
    await w.index(document)  # returns normally: the bus does not retry it

    assert w.doc(document).status == "error"
    assert reason in w.error(document)
    assert w.types(document)[-1] == "DocumentIndexingFailed"
    assert w.segment_created(document) == [] and w.units(dataset) == []
    position = w.store.max_position()
    await w.index(document)
    assert w.store.max_position() == position


async def test_fail_document_marks_a_stuck_document_error_and_retry_recovers(
    w: World,
) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    w.storage.on("load", "extracted.txt", crash)
    with pytest.raises(Crash):
        await w.index(document)
    assert w.doc(document).status == "cleaning"

    await fail_document(w.deps, w.trigger(document), Crash("gave up"))  # the dead letter

    assert w.doc(document).status == "error"
    assert "Indexing failed after retries" in w.error(document)
    position = w.store.max_position()
    await fail_document(w.deps, w.trigger(document), Crash("again"))  # already failed
    await w.index(document)  # a late redelivery: the attempt has ended
    assert w.store.max_position() == position

    assert w.control(dataset, document, "retry").status == "accepted"
    await w.index(document)
    assert_indexed(w, dataset, document, PARAGRAPHS)
    assert w.doc(document).attempt == 2


async def test_fail_document_ignores_other_events_and_finished_documents(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    await w.index(document)
    position = w.store.max_position()
    await fail_document(w.deps, w.trigger(document), Crash())  # completed
    await fail_document(w.deps, w.last_event(dataset), Crash())  # not an indexing message
    assert w.store.max_position() == position


async def test_dead_letter_of_an_old_attempt_does_not_fail_the_new_one(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    old_trigger = w.trigger(document)
    w.storage.on("load", "source/notes.txt", crash)
    with pytest.raises(Crash):
        await w.index(document, old_trigger)  # attempt 1 keeps failing...
    await w.replace_text(dataset, document, "\n\n".join(NEW_PARAGRAPHS))  # ...the user updates

    await fail_document(w.deps, old_trigger, Crash("attempt 1 gave up"))

    assert w.doc(document).status == "waiting"  # attempt 2 is untouched
    await w.index(document)
    assert_indexed(w, dataset, document, NEW_PARAGRAPHS)


# -- deleted documents and datasets ---------------------------------------------------------


@pytest.mark.parametrize("deleted", ["document", "dataset"])
async def test_a_job_for_a_deleted_document_or_dataset_does_nothing(
    w: World, deleted: str
) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)
    trigger = w.trigger(document)
    if deleted == "document":
        await w.delete_document(dataset, document)
    else:
        await w.delete_dataset(dataset)
    position = w.store.max_position()

    await w.index(document, trigger)

    assert w.store.max_position() == position
    assert w.vectors.collections() == {}
    assert w.storage.keys() == set()


@pytest.mark.parametrize("stage", ["parsing", "cleaning", "splitting", "indexing"])
@pytest.mark.parametrize("deleted", ["document", "dataset"])
async def test_deleted_while_the_job_runs_leaves_nothing_behind(
    w: World, deleted: str, stage: str
) -> None:
    # Cleanup runs as soon as the deletion is recorded; the job only notices at its next
    # record, after writing that stage's output (a file; the collection and vectors):
    # what it wrote must not outlive it.
    dataset = w.dataset()
    document = await w.document(dataset)

    async def delete() -> None:
        if deleted == "document":
            await w.delete_document(dataset, document)
        else:
            await w.delete_dataset(dataset)

    w.storage.on("load", STAGE_INPUT[stage], delete, after=True)  # the stage has its input
    await w.index(document)

    assert "DocumentIndexingCompleted" not in w.types(document)
    assert w.units(dataset) == []
    assert w.vectors.collections() == ({} if deleted == "dataset"
                                       else {collection_for(dataset, False): 384}
                                       if stage == "indexing" else {})
    assert w.storage.keys() == set()


async def test_deleted_before_a_stage_reads_its_input_stops_on_redelivery(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset)

    async def delete() -> None:
        await w.delete_document(dataset, document)

    w.storage.on("load", "cleaned.txt", delete)
    with pytest.raises(FileNotFoundInStorage):
        await w.index(document)  # cleanup took the input away: retried by the bus...
    position = w.store.max_position()
    await w.index(document)  # ...and the retry finds the document deleted
    assert w.store.max_position() == position
    assert w.storage.keys() == set() and w.units(dataset) == []


# -- segments added, edited, disabled by hand --------------------------------------------------


async def indexed_document(w: World, technique: Technique = "high_quality"
                           ) -> tuple[UUID, UUID]:
    dataset = w.dataset(technique)
    document = await w.document(dataset)
    await w.index(document)
    return dataset, document


def add_segment(w: World, dataset: UUID, document: UUID, content: str) -> UUID:
    segment = uuid4()
    w.run(kc.CreateSegments(dataset_id=dataset, document_id=document, first_position=5,
                            segments=[kc.NewSegment(segment_id=segment, content=content,
                                                    word_count=len(content), tokens=10)]),
          document)
    return segment


def edit_segment(w: World, dataset: UUID, document: UUID, segment: UUID,
                 **changes: Any) -> None:
    w.run(kc.UpdateSegment(dataset_id=dataset, document_id=document, segment_id=segment,
                           **changes), segment)


@pytest.mark.parametrize("technique", ["high_quality", "economy"])
async def test_hand_made_segment_is_indexed_edited_disabled_and_enabled(
    w: World, technique: Technique
) -> None:
    dataset, document = await indexed_document(w, technique)
    added = "Otters hold hands while they sleep so they do not drift apart."
    segment = add_segment(w, dataset, document, added)
    await w.index_segment(segment)
    assert_indexed(w, dataset, document, [*PARAGRAPHS, added])
    assert w.last_event(segment).type == "SegmentIndexed"

    edited = "Sea otters wrap themselves in kelp so the current does not carry them off."
    edit_segment(w, dataset, document, segment, content=edited)
    await w.index_segment(segment)
    assert_indexed(w, dataset, document, [*PARAGRAPHS, edited])
    economy = technique == "economy"
    if economy:
        hits = await w.vectors.search_by_full_text(collection_for(dataset, True), "kelp", 5)
    else:
        query = await w.embeddings.embed_query("why do sea otters wrap in kelp?")
        hits = await w.vectors.search_by_vector(collection_for(dataset, False), query, 1)
    assert [h.id for h in hits] == [str(segment)]

    edit_segment(w, dataset, document, segment, enabled=False)
    await w.index_segment(segment)
    assert str(segment) not in {u.id for u in w.units(dataset)}
    assert_indexed(w, dataset, document, [*PARAGRAPHS, edited])

    edit_segment(w, dataset, document, segment, enabled=True)
    await w.index_segment(segment)
    units = w.units(dataset)
    assert str(segment) in {u.id for u in units}
    await w.index_segment(segment)  # redelivered
    assert w.units(dataset) == units


async def test_edited_split_segment_gets_its_new_vector(w: World) -> None:
    dataset, document = await indexed_document(w)
    first = w.segments(document)[0]
    edit_segment(w, dataset, document, first.id, content="The lamp is lit at dusk.")
    await w.index_segment(first.id)
    assert_indexed(w, dataset, document, ["The lamp is lit at dusk.", *PARAGRAPHS[1:]])


async def test_child_chunk_edits_are_indexed(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset, "\n\n".join(NESTED_PARAGRAPHS),
                                rule=HIERARCHICAL_RULE, doc_form="hierarchical_model")
    await w.index(document)
    parent = w.segments(document)[0]
    first, second = parent.data.child_chunks

    added = uuid4()
    w.run(kc.CreateChildChunk(dataset_id=dataset, document_id=document, segment_id=parent.id,
                              child_chunk_id=added, content="Scouts return with nectar."),
          parent.id)
    await w.index_segment(parent.id)
    w.run(kc.UpdateChildChunk(dataset_id=dataset, document_id=document, segment_id=parent.id,
                              child_chunk_id=first.id, content="Bees dance."), parent.id)
    await w.index_segment(parent.id)
    w.run(kc.DeleteChildChunk(dataset_id=dataset, document_id=document, segment_id=parent.id,
                              child_chunk_id=second.id), parent.id)
    await w.index_segment(parent.id)

    assert_indexed(w, dataset, document, NESTED_PARAGRAPHS)
    texts = {u.id: u.text for u in w.units(dataset) if u.metadata["segment_id"] == str(parent.id)}
    assert texts == {str(first.id): "Bees dance.", str(added): "Scouts return with nectar."}


async def test_late_edit_of_a_superseded_segment_writes_nothing(w: World) -> None:
    dataset, document = await indexed_document(w)
    old = w.segments(document)[0]
    edit_segment(w, dataset, document, old.id, content="An edit that arrives late.")
    assert w.control(dataset, document, "reindex").status == "accepted"
    await w.index(document)
    units = w.units(dataset)

    await w.index_segment(old.id)  # the edit's message, handled after the new split

    assert w.units(dataset) == units
    assert_indexed(w, dataset, document, PARAGRAPHS)


@pytest.mark.parametrize("deleted", ["document", "dataset"])
async def test_segment_message_after_a_deletion_writes_nothing(
    w: World, deleted: str
) -> None:
    # The indexing lane and the cleanup lane are separate: cleanup may go first.
    dataset, document = await indexed_document(w)
    segment = add_segment(w, dataset, document, "A segment added just before the delete.")
    if deleted == "document":
        await w.delete_document(dataset, document)
    else:
        await w.delete_dataset(dataset)

    await w.index_segment(segment)

    assert w.vectors.collections() == ({} if deleted == "dataset"
                                       else {collection_for(dataset, False): 384})
    assert w.units(dataset) == []


async def test_segment_deleted_while_it_is_indexed_leaves_no_vector(w: World) -> None:
    dataset, document = await indexed_document(w)
    segment = add_segment(w, dataset, document, "Added, then deleted at once.")

    async def delete() -> None:
        w.run(kc.DeleteSegment(dataset_id=dataset, document_id=document, segment_id=segment),
              segment)
        await cleanup.segment_deleted(
            w.deps, cast(Envelope[ev.SegmentDeleted], w.last_event(segment)))

    w.vectors.on_add(delete)  # cleanup runs while the indexer is embedding
    await w.index_segment(segment)

    assert str(segment) not in {u.id for u in w.units(dataset)}
    assert_indexed(w, dataset, document, PARAGRAPHS)


async def test_segments_cannot_be_edited_or_deleted_while_the_document_is_indexed(
        w: World) -> None:
    # Allowed, the job would write the segment's split text over the edit (or re-add a
    # deleted segment's vector from its chunks file).
    dataset = w.dataset()
    document = await w.document(dataset)
    refused: list[str | None] = []

    async def edit_and_delete() -> None:
        segment = w.segments(document)[0]
        for payload in (
            kc.UpdateSegment(dataset_id=dataset, document_id=document, segment_id=segment.id,
                             content="Edited while the job was embedding."),
            kc.DeleteSegment(dataset_id=dataset, document_id=document, segment_id=segment.id),
        ):
            outcome = w.command(payload, segment.id)
            refused.append((outcome.error or {}).get("code"))

    w.storage.on("load", "chunks.json", edit_and_delete)
    await w.index(document)

    assert refused == ["invalid_param", "invalid_param"]
    assert_indexed(w, dataset, document, PARAGRAPHS)


# -- cleanup ------------------------------------------------------------------------------------


async def test_deleting_a_document_removes_its_vectors_and_files_only(w: World) -> None:
    dataset, document = await indexed_document(w)
    other = await w.document(dataset)
    await w.index(other)

    await w.delete_document(dataset, document)
    deleted = cast(Envelope[ev.DocumentDeleted], w.last_event(document))
    await cleanup.document_deleted(w.deps, deleted)  # redelivered

    assert w.units(dataset, document) == []
    assert w.storage.keys(document_prefix(dataset, document)) == set()
    assert_indexed(w, dataset, other, PARAGRAPHS)
    assert w.storage.keys(document_prefix(dataset, other))


async def test_deleting_a_dataset_removes_its_collections_and_files_only(w: World) -> None:
    dataset, _ = await indexed_document(w)
    economy, kept = await indexed_document(w, "economy")
    assert len(w.vectors.collections()) == 2

    await w.delete_dataset(dataset)
    await cleanup.dataset_deleted(w.deps, cast(Envelope[ev.DatasetDeleted],
                                               w.last_event(dataset)))

    assert w.vectors.collections() == {collection_for(economy, True): 0}
    assert w.storage.keys(dataset_prefix(dataset)) == set()
    assert_indexed(w, economy, kept, PARAGRAPHS)


async def test_deleting_a_segment_removes_every_vector_it_had(w: World) -> None:
    dataset = w.dataset()
    document = await w.document(dataset, "\n\n".join(NESTED_PARAGRAPHS),
                                rule=HIERARCHICAL_RULE, doc_form="hierarchical_model")
    await w.index(document)
    parent, other = w.segments(document)
    # A child removed by an edit whose re-index has not run yet still has its vector.
    w.run(kc.DeleteChildChunk(dataset_id=dataset, document_id=document, segment_id=parent.id,
                              child_chunk_id=parent.data.child_chunks[0].id), parent.id)

    w.run(kc.DeleteSegment(dataset_id=dataset, document_id=document, segment_id=parent.id),
          parent.id)
    deleted = cast(Envelope[ev.SegmentDeleted], w.last_event(parent.id))
    await cleanup.segment_deleted(w.deps, deleted)
    await cleanup.segment_deleted(w.deps, deleted)  # redelivered

    assert {u.metadata["segment_id"] for u in w.units(dataset)} == {str(other.id)}
    assert_indexed(w, dataset, document, [NESTED_PARAGRAPHS[1]])
