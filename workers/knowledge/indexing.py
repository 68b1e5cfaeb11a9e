"""The indexing processor (Dify's `dataset` / `priority_dataset` queues).

A job is "index attempt N of document D". It walks the document through its stages —
extract → clean → split → embed + index — recording each stage as an event on the Document
aggregate before starting the next. Every step is idempotent: intermediate results are
blobs keyed by (document, attempt), segment ids are derived from (document, attempt,
position), vectors are upserts by segment id. So a job that is killed, redelivered or run
twice resumes from the last recorded stage and leaves exactly one copy of everything.

Pausing, deleting or re-requesting a document bumps its aggregate version; the job's next
record then conflicts, it reloads, finds its attempt stale and stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from adapters.embeddings.models import EmbeddingModel, EmbeddingModels, UnknownEmbeddingModel
from adapters.storage.base import Storage
from adapters.vector.base import VectorDocument, VectorStore
from commands.aggregate import Context
from commands.knowledge.aggregates import Dataset, Document, Segment, StaleWork
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from events.store import ConcurrencyConflict, EventStore
from indexing.clean import clean_text
from indexing.extract import ExtractionError, UnsupportedFileType, extract_text
from indexing.lexical import extract_keywords, index_terms
from indexing.split import ProcessRule, split_hierarchical, split_text
from schemas.base import EventPayload
from schemas.knowledge import events as ev
from schemas.knowledge.naming import (
    child_id_for,
    content_hash,
    dataset_prefix,
    document_prefix,
    keyword_collection,
    segment_id_for,
    vector_collection,
)
from workers.ownership import still_owner

log = logging.getLogger(__name__)
EMBED_BATCH = 32
MAX_STAGE_CONFLICTS = 20


def caused_by(event: Envelope[EventPayload]) -> Context:
    """Events a worker records are caused by the event it reacts to, with no actor."""
    return Context(tenant_id=event.tenant_id, actor_id=None,
                   correlation_id=event.correlation_id, causation_id=event.event_id)


@dataclass
class Chunk:
    segment_id: str
    content: str
    word_count: int
    tokens: int
    children: list[dict[str, Any]]


@dataclass
class IndexingDeps:
    store: EventStore
    storage: Storage
    embedding_models: EmbeddingModels  # each dataset names its own
    vectors: VectorStore  # high_quality datasets
    keywords: VectorStore  # economy datasets: Postgres full text

    async def model_of(self, dataset: Dataset) -> EmbeddingModel:
        """The dataset's embedding model (UnknownEmbeddingModel, a ValueError, if this
        deployment does not offer it, or provider_not_initialize if its workspace no
        longer has it: its documents fail with that message)."""
        settings = dataset.settings
        return await self.embedding_models.resolve(
            dataset.tenant_id, settings.get("embedding_model_provider"),
            settings.get("embedding_model"))

    async def target(self, dataset: Dataset, economy: bool) -> IndexTarget:
        if economy:
            return IndexTarget(self.keywords, keyword_collection(dataset.id), None)
        model = await self.model_of(dataset)
        return IndexTarget(self.vectors, vector_collection(dataset.id, model.provider,
                                                           model.name), model)


@dataclass(frozen=True)
class IndexTarget:
    """Where a dataset's chunks go: the store, the collection and, for vectors, the model
    whose space the collection holds (None: economy, full text only)."""

    store: VectorStore
    collection: str
    model: EmbeddingModel | None

    async def create(self) -> None:
        dimensions = 0 if self.model is None else self.model.embeddings.dimensions
        await self.store.create(self.collection, dimensions)

    async def vectors(self, texts: list[str]) -> list[list[float] | None]:
        if self.model is None:
            return [None] * len(texts)
        return list(await self.model.embeddings.embed_documents(texts))


class IndexingJob:
    """One run of one document's current attempt. Each stage loads the document through a
    unit of work and commits the stage's events (a conflict means someone else moved it:
    load again and check the attempt still runs)."""

    def __init__(self, deps: IndexingDeps, document_id: UUID,
                 cause: Envelope[EventPayload]) -> None:
        self.d = deps
        self.document_id = document_id
        self.ctx = caused_by(cause)
        self.cause = cause
        self.attempt: int | None = None
        # Index entries this run wrote: (store, collection, ids), for `discard`.
        self.written: list[tuple[VectorStore, str, list[str]]] = []

    async def _load(self) -> tuple[UnitOfWork, Document]:
        uow = UnitOfWork(self.d.store, self.ctx)
        return uow, await asyncio.to_thread(uow.get, Document, self.document_id)

    async def run(self) -> None:
        uow, doc = await self._load()
        if not doc.exists or doc.deleted or doc.paused or doc.status == "error":
            return  # a stale message: the attempt failed, or was paused or replaced
        attempt = self.attempt = doc.attempt
        dataset = await asyncio.to_thread(uow.get, Dataset, doc.dataset_id)
        if dataset.deleted:
            return
        if doc.status == "completed":
            # A redelivery has nothing to do. A replay (`eddy events replay`, e.g. after the
            # vector store lost data) of the completed attempt writes its index again.
            if (self.cause.replay_id is not None
                    and getattr(self.cause.payload, "attempt", attempt) == attempt):
                await self._rewrite_index(uow, doc)
            return
        log.info("indexing document", extra={"document_id": str(doc.id), "attempt": attempt,
                                             "status": doc.status})
        conflicts = 0
        while doc.status != "completed":
            try:
                await self._step(uow, doc, attempt)
            except ConcurrencyConflict:
                conflicts += 1
                if conflicts > MAX_STAGE_CONFLICTS:
                    raise
                uow, doc = await self._load()
                doc.ensure_current(attempt)  # StaleWork when paused / replaced / deleted
            except (UnsupportedFileType, ExtractionError, ValueError) as error:
                # Permanent: the same input fails the same way; retrying cannot help.
                uow, doc = await self._load()
                doc.fail(attempt, str(error), self.ctx)
                await asyncio.to_thread(uow.commit)
                return

    async def _rewrite_index(self, uow: UnitOfWork, doc: Document) -> None:
        """The completed attempt's segments as they are now (edited, disabled or deleted
        since), and no other attempt's units; records nothing, so a replay changes nothing
        when the index is whole."""
        dataset = await asyncio.to_thread(uow.get, Dataset, doc.dataset_id)
        index = await self.d.target(dataset, doc.indexing_technique == "economy")
        await index.create()
        await index.store.delete_by_document_id(index.collection, str(doc.id),
                                                before_attempt=doc.split_attempt)
        for segment_id in sorted(doc.indexed):
            segment = await asyncio.to_thread(uow.get, Segment, UUID(segment_id))
            if segment.exists and not segment.deleted:
                await write_segment_units(self.d, self.ctx, segment, doc, index)

    async def _record(self, uow: UnitOfWork, doc: Document, attempt: int,
                      payload: EventPayload) -> None:
        """Record the stage on the document and commit it with whatever else the unit of
        work holds (the split's new segments)."""
        doc.stage(attempt, payload, self.ctx)
        # Deleting a dataset records nothing on its documents: look at it before every record.
        events = await asyncio.to_thread(self.d.store.load, doc.dataset_id)
        if Dataset.replay(doc.dataset_id, events).deleted:
            raise StaleWork(f"document {doc.id}: dataset {doc.dataset_id} was deleted")
        await still_owner()
        await asyncio.to_thread(uow.commit)

    async def discard(self) -> None:
        """After StaleWork. Cleanup reacts to a deletion as soon as it is recorded, but this
        job only noticed at its next record, after writing that stage's output; take back
        what must not outlive the attempt: everything of a deleted document or dataset
        (again, as cleanup does), the index entries of a superseded attempt (its successor
        may have cleared the document's entries already). A paused attempt keeps its
        writes: resuming it overwrites them."""
        uow, doc = await self._load()
        if not doc.exists:
            return
        if (await asyncio.to_thread(uow.get, Dataset, doc.dataset_id)).deleted:
            await remove_dataset_data(self.d, doc.dataset_id)
        elif doc.deleted:
            await remove_document_data(self.d, doc.dataset_id, doc.id)
        elif doc.attempt != self.attempt:
            for store, collection, ids in self.written:
                await store.delete_by_ids(collection, ids)

    async def _step(self, uow: UnitOfWork, doc: Document, attempt: int) -> None:
        rule = ProcessRule.from_dify(doc.process_rule)
        base = f"{document_prefix(doc.dataset_id, doc.id)}indexing/{attempt}/"
        if doc.status == "waiting":
            await self._record(uow, doc, attempt, ev.DocumentProcessingStarted(attempt=attempt))
        elif doc.status == "parsing":
            raw = await self.d.storage.load(doc.source.key)
            extracted = await asyncio.to_thread(
                extract_text, raw, doc.source.name, doc.source.mime_type)
            await self.d.storage.save(base + "extracted.txt", extracted.text.encode())
            await self._record(uow, doc, attempt, ev.DocumentParsed(
                attempt=attempt, text_key=base + "extracted.txt",
                characters=len(extracted.text)))
        elif doc.status == "cleaning":
            assert doc.text_key
            text = (await self.d.storage.load(doc.text_key)).decode()
            cleaned = clean_text(text, rule.pre_processing)
            await self.d.storage.save(base + "cleaned.txt", cleaned.encode())
            await self._record(uow, doc, attempt, ev.DocumentCleaned(
                attempt=attempt, text_key=base + "cleaned.txt", characters=len(cleaned)))
        elif doc.status == "splitting":
            await self._split(uow, doc, rule, attempt, base)
        elif doc.status == "indexing":
            await self._index(uow, doc, attempt)

    async def _split(self, uow: UnitOfWork, doc: Document, rule: ProcessRule, attempt: int,
                     base: str) -> None:
        assert doc.cleaned_key
        text = (await self.d.storage.load(doc.cleaned_key)).decode()
        # Chunk sizes are tokens of the dataset's own model.
        dataset = await asyncio.to_thread(uow.get, Dataset, doc.dataset_id)
        count = (await self.d.model_of(dataset)).embeddings.count_tokens
        if rule.mode == "hierarchical":
            assert rule.subchunk_segmentation and rule.parent_mode
            parents = await asyncio.to_thread(
                split_hierarchical, text, rule.segmentation, rule.subchunk_segmentation, count,
                rule.parent_mode)
            pieces = [(p.content, p.children) for p in parents]
        else:
            pieces = [(c, []) for c in await asyncio.to_thread(
                split_text, text, rule.segmentation, count, rule.mode == "automatic")]
        # Economy datasets are searched by keyword: each segment gets its keywords, as
        # Dify's keyword table extracts them (jieba TF-IDF, any language).
        keywords: list[list[str]] = (
            await asyncio.to_thread(lambda: [extract_keywords(c) for c, _ in pieces])
            if doc.indexing_technique == "economy" else [[] for _ in pieces])
        chunks: list[Chunk] = []
        for position, ((content, children), words) in enumerate(
                zip(pieces, keywords, strict=True), start=1):
            segment_id = segment_id_for(doc.id, attempt, position)
            child_data = [ev.ChildChunkData(id=child_id_for(segment_id, i), content=c,
                                            position=i, word_count=len(c))
                          for i, c in enumerate(children, start=1)]
            chunk = Chunk(str(segment_id), content, len(content), count(content),
                          [c.model_dump(mode="json") for c in child_data])
            chunks.append(chunk)
            uow.new(Segment, segment_id).create(ev.SegmentCreated(
                dataset_id=doc.dataset_id, document_id=doc.id, attempt=attempt,
                position=position, content=content, word_count=chunk.word_count,
                tokens=chunk.tokens, index_node_hash=content_hash(content), keywords=words,
                child_chunks=child_data,
            ), self.ctx)
        await self.d.storage.save(base + "chunks.json",
                                  orjson.dumps([c.__dict__ for c in chunks]))
        # The split and all its segments in one transaction: both or neither.
        await self._record(uow, doc, attempt, ev.DocumentSplit(
            attempt=attempt, chunks_key=base + "chunks.json", total_segments=len(chunks),
            word_count=sum(c.word_count for c in chunks),
            tokens=sum(c.tokens for c in chunks)))

    async def _index(self, uow: UnitOfWork, doc: Document, attempt: int) -> None:
        assert doc.chunks_key
        chunks = [Chunk(**c) for c in orjson.loads(await self.d.storage.load(doc.chunks_key))]
        dataset = await asyncio.to_thread(uow.get, Dataset, doc.dataset_id)
        target = await self.d.target(dataset, doc.indexing_technique == "economy")
        store, collection = target.store, target.collection
        await target.create()
        if not doc.indexed:
            # Vectors of earlier attempts go before this attempt's arrive; never a newer
            # attempt's (this worker may be late: it finds out at its next record).
            await store.delete_by_document_id(collection, str(doc.id), before_attempt=attempt)
        pending = [c for c in chunks if c.segment_id not in doc.indexed]
        for start in range(0, len(pending), EMBED_BATCH):
            batch = pending[start:start + EMBED_BATCH]
            units = await self._vector_documents(doc, batch, target)
            await still_owner()  # the job may have moved to another member while we embedded
            self.written.append((store, collection, [u.id for u in units]))
            await store.add_texts(collection, units)
            await self._record(uow, doc, attempt, ev.DocumentSegmentsIndexed(
                attempt=attempt, segment_ids=[UUID(c.segment_id) for c in batch],
                completed_segments=len(doc.indexed) + len(batch)))
        await self._record(uow, doc, attempt, ev.DocumentIndexingCompleted(
            attempt=attempt, completed_segments=len(chunks)))

    async def _vector_documents(self, doc: Document, batch: list[Chunk],
                                target: IndexTarget) -> list[VectorDocument]:
        # Hierarchical documents embed their child chunks, each pointing at its parent.
        units = [(c.segment_id, child["id"], child["content"]) for c in batch
                 for child in c.children] or [(c.segment_id, c.segment_id, c.content)
                                              for c in batch]
        vectors = await target.vectors([u[2] for u in units])
        return await vector_documents(
            [(unit_id, text, vector) for (_, unit_id, text), vector in zip(units, vectors,
                                                                          strict=True)],
            lambda i: {"dataset_id": str(doc.dataset_id), "document_id": str(doc.id),
                       "segment_id": units[i][0], "attempt": doc.attempt})


async def vector_documents(units: list[tuple[str, str, list[float] | None]],
                           metadata: Callable[[int], dict[str, Any]]) -> list[VectorDocument]:
    """Index entries for (id, text, vector) units; `metadata(i)` is unit i's metadata, to
    which its text's hash is added. Full-text search indexes the text's words (CJK cut by
    jieba / n-grams), computed in a thread: jieba is CPU work."""
    terms = await asyncio.to_thread(lambda: [index_terms(text) for _, text, _ in units])
    return [VectorDocument(id=unit_id, text=text, vector=vector,
                           terms=None if words == text else words,
                           metadata={**metadata(i), "doc_hash": content_hash(text)})
            for i, ((unit_id, text, vector), words) in enumerate(zip(units, terms, strict=True))]


async def index_segment(deps: IndexingDeps,
                        event: Envelope[ev.SegmentCreated | ev.SegmentUpdated]) -> None:
    """A segment added or edited by hand: (re)write its vector, then record it indexed
    (unless that content is recorded indexed already: a redelivery or replay)."""
    uow = UnitOfWork(deps.store, caused_by(event))
    segment = await asyncio.to_thread(uow.get, Segment, event.aggregate_id)
    if not segment.exists or segment.deleted:
        return
    document = await asyncio.to_thread(uow.get, Document, segment.document_id)
    if document.deleted or segment.attempt != document.split_attempt:
        return
    dataset = await asyncio.to_thread(uow.get, Dataset, segment.dataset_id)
    if dataset.deleted:
        return  # cleanup may have run already: writing would recreate the collection
    index = await deps.target(dataset, document.indexing_technique == "economy")
    await write_segment_units(deps, uow.ctx, segment, document, index)
    indexed_hash = content_hash(segment.data.content)
    if segment.indexed_hash == indexed_hash:
        return
    segment.record(ev.SegmentIndexed(index_node_hash=indexed_hash), uow.ctx)
    try:
        await asyncio.to_thread(uow.commit)
    except ConcurrencyConflict:
        pass  # edited again meanwhile: that edit's own job writes the newer vector


async def write_segment_units(deps: IndexingDeps, ctx: Context, segment: Segment,
                              document: Document, index: IndexTarget) -> None:
    """Make the index hold exactly the segment's current units (upserts by unit id, so
    writing twice leaves one copy), then take them back if it was deleted meanwhile."""
    target, collection = index.store, index.collection
    await index.create()
    data = segment.data
    ids = [str(c.id) for c in data.child_chunks] or [str(segment.id)]
    # Units this segment no longer has (removed child chunks, or the parent's own vector
    # once it has children) must not be found any more.
    stale = (segment.child_ids_seen | {str(segment.id)}) - set(ids)
    if stale:
        await target.delete_by_ids(collection, sorted(stale))
    if not data.enabled:
        await target.delete_by_ids(collection, ids)
    else:
        texts = [c.content for c in data.child_chunks] or [data.content]
        vectors = await index.vectors(texts)
        await target.add_texts(collection, await vector_documents(
            list(zip(ids, texts, vectors, strict=True)),
            lambda _: {"dataset_id": str(segment.dataset_id), "document_id": str(document.id),
                       "segment_id": str(segment.id), "attempt": segment.attempt}))
    # Deleted while we embedded? Its cleanup may have run before our write: take it back.
    fresh = UnitOfWork(deps.store, ctx)
    if (await asyncio.to_thread(fresh.get, Dataset, segment.dataset_id)).deleted:
        await target.delete(collection)
    elif ((await asyncio.to_thread(fresh.get, Segment, segment.id)).deleted
          or (await asyncio.to_thread(fresh.get, Document, document.id)).deleted):
        await target.delete_by_ids(collection, ids)


async def run_indexing_job(
        deps: IndexingDeps,
        event: Envelope[ev.DocumentIndexingRequested | ev.DocumentIndexingResumed]) -> None:
    job = IndexingJob(deps, event.aggregate_id, event)
    try:
        await job.run()
    except StaleWork as stale:
        log.info("indexing job stopped: %s", stale)
        await job.discard()


async def fail_document(deps: IndexingDeps, event: Envelope[EventPayload],
                        exc: BaseException) -> None:
    """Dead-lettered job: the document must not sit in a processing state forever."""
    if not isinstance(event.payload, ev.DocumentIndexingRequested | ev.DocumentIndexingResumed):
        return
    # The attempt the message was about, not the current one: a newer attempt (the document
    # was updated meanwhile) is not the one that failed.
    history = await asyncio.to_thread(deps.store.load, event.aggregate_id)
    attempt = Document.replay(event.aggregate_id, [
        e for e in history if e.aggregate_version <= event.aggregate_version]).attempt
    for _ in range(MAX_STAGE_CONFLICTS):
        uow = UnitOfWork(deps.store, caused_by(event))
        doc = await asyncio.to_thread(uow.get, Document, event.aggregate_id)
        doc.fail(attempt, f"Indexing failed after retries: {exc!r}", uow.ctx)
        try:
            await asyncio.to_thread(uow.commit)
            return
        except ConcurrencyConflict:
            continue


async def collections_of(deps: IndexingDeps,
                         dataset_id: UUID) -> tuple[Dataset, list[tuple[VectorStore, str]]]:
    """The dataset (as its history says now) and every collection it may have: a vector one
    per embedding model it ever named, then the keyword one."""
    history = await asyncio.to_thread(deps.store.load, dataset_id)
    models: list[tuple[str, str]] = []
    for event in history:
        if isinstance(event.payload, ev.DatasetCreated | ev.DatasetUpdated):
            provider, model = event.payload.embedding_model_provider, event.payload.embedding_model
            try:
                models.append(deps.embedding_models.key(provider, model))
            except UnknownEmbeddingModel:
                models.append((provider or "", model or ""))  # named, never offered here
    vectors = [(deps.vectors, vector_collection(dataset_id, *m)) for m in dict.fromkeys(models)]
    return (Dataset.replay(dataset_id, history),
            [*vectors, (deps.keywords, keyword_collection(dataset_id))])


async def remove_document_data(deps: IndexingDeps, dataset_id: UUID, document_id: UUID) -> None:
    """A deleted document's index entries (in any collection) and stored files."""
    for store, collection in (await collections_of(deps, dataset_id))[1]:
        await store.delete_by_document_id(collection, str(document_id))
    await deps.storage.delete_prefix(document_prefix(dataset_id, document_id))


async def remove_dataset_data(deps: IndexingDeps, dataset_id: UUID) -> None:
    """A deleted dataset's collections and stored files."""
    for store, collection in (await collections_of(deps, dataset_id))[1]:
        await store.delete(collection)
    await deps.storage.delete_prefix(dataset_prefix(dataset_id))


async def rewrite_dataset_vectors(deps: IndexingDeps, dataset_id: UUID,
                                  segments: Sequence[Mapping[str, Any]]) -> str:
    """`eddy vdb-migrate`: the dataset's collection in the configured vector store made
    anew from its indexed segments (as the read model lists them: `indexed_segments`),
    dropped first as Dify's does, filled EMBED_BATCH units at a time; its name."""
    dataset = Dataset.replay(dataset_id, await asyncio.to_thread(deps.store.load, dataset_id))
    target = await deps.target(dataset, economy=False)
    await target.store.delete(target.collection)
    await target.create()
    # (segment, unit) pairs: a hierarchical segment's units are its child chunks
    units = [(s, unit) for s in segments for unit in (s["child_chunks"] or [s])]
    for start in range(0, len(units), EMBED_BATCH):
        batch = units[start:start + EMBED_BATCH]
        vectors = await target.vectors([unit["content"] for _, unit in batch])

        def metadata(i: int, batch: list[tuple[Mapping[str, Any], Any]] = batch
                     ) -> dict[str, Any]:
            segment = batch[i][0]
            return {"dataset_id": str(dataset_id), "document_id": str(segment["document_id"]),
                    "segment_id": str(segment["id"]), "attempt": segment["attempt"]}

        await target.store.add_texts(target.collection, await vector_documents(
            [(str(unit["id"]), unit["content"], vector)
             for (_, unit), vector in zip(batch, vectors, strict=True)], metadata))
    return target.collection
