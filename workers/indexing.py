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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID, uuid5

import orjson

from adapters.bus.base import Message
from adapters.embeddings.base import EmbeddingProvider
from adapters.storage.base import Storage
from adapters.vector.base import VectorDocument, VectorStore
from commands.aggregates import Aggregate, Context
from commands.knowledge import Dataset, Document, Segment, StaleWork, content_hash
from events.envelope import Envelope
from events.store import ConcurrencyConflict, EventStore
from indexing.clean import clean_text
from indexing.extract import ExtractionError, UnsupportedFileType, extract_text
from indexing.split import ProcessRule, split_hierarchical, split_text
from schemas import events as ev

log = logging.getLogger(__name__)
A = TypeVar("A", bound=Aggregate)
EMBED_BATCH = 32
MAX_STAGE_CONFLICTS = 20


def collection_for(dataset_id: UUID, economy: bool) -> str:
    return f"{'kw' if economy else 'vec'}_{dataset_id.hex}"


def document_prefix(dataset_id: UUID, document_id: UUID) -> str:
    """Every blob of a document (its upload and indexing artifacts) lives under this."""
    return f"datasets/{dataset_id}/{document_id}/"


def segment_id_for(document_id: UUID, attempt: int, position: int) -> UUID:
    return uuid5(document_id, f"segment:{attempt}:{position}")


def child_id_for(segment_id: UUID, position: int) -> UUID:
    return uuid5(segment_id, f"child:{position}")


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
    embeddings: EmbeddingProvider
    vectors: VectorStore  # high_quality datasets
    keywords: VectorStore  # economy datasets: Postgres full text


class IndexingJob:
    """One run of one document's current attempt."""

    def __init__(self, deps: IndexingDeps, document_id: UUID, cause: Envelope) -> None:
        self.d = deps
        self.document_id = document_id
        self.ctx = Context(tenant_id=cause.tenant_id, actor_id=None,
                           correlation_id=cause.correlation_id, causation_id=cause.event_id)

    async def _load(self, cls: type[A], aggregate_id: UUID) -> A:
        return cls.replay(aggregate_id, await asyncio.to_thread(self.d.store.load, aggregate_id))

    async def run(self) -> None:
        doc = await self._load(Document, self.document_id)
        if not doc.exists or doc.deleted or doc.paused or not doc.processing:
            return  # a stale message: the attempt ended, or was paused or replaced
        attempt = doc.attempt
        dataset = await self._load(Dataset, doc.dataset_id)
        if dataset.deleted:
            return
        log.info("indexing document", extra={"document_id": str(doc.id), "attempt": attempt,
                                             "status": doc.status})
        conflicts = 0
        while doc.status != "completed":
            try:
                await self._step(doc, dataset, attempt)
            except ConcurrencyConflict:
                conflicts += 1
                if conflicts > MAX_STAGE_CONFLICTS:
                    raise
                doc = await self._load(Document, self.document_id)
                doc.ensure_current(attempt)  # StaleWork when paused / replaced / deleted
            except (UnsupportedFileType, ExtractionError, ValueError) as error:
                # Permanent: the same input fails the same way; retrying cannot help.
                doc = await self._load(Document, self.document_id)
                doc.fail(attempt, str(error), self.ctx)
                await asyncio.to_thread(self.d.store.append, doc.pending)
                return

    async def _record(self, doc: Document, attempt: int, payload: ev.EventPayload,
                      extra: Sequence[Aggregate] = ()) -> None:
        doc.stage(attempt, payload, self.ctx)
        events = [*doc.pending, *(e for a in extra for e in a.pending)]
        try:
            await asyncio.to_thread(self.d.store.append, events)
        finally:
            doc.pending.clear()

    async def _step(self, doc: Document, dataset: Dataset, attempt: int) -> None:
        rule = ProcessRule.from_dify(doc.process_rule)
        base = f"{document_prefix(doc.dataset_id, doc.id)}indexing/{attempt}/"
        if doc.status == "waiting":
            await self._record(doc, attempt, ev.DocumentProcessingStarted(attempt=attempt))
        elif doc.status == "parsing":
            raw = await self.d.storage.load(doc.source["key"])
            extracted = await asyncio.to_thread(
                extract_text, raw, doc.source["name"], doc.source.get("mime_type"))
            await self.d.storage.save(base + "extracted.txt", extracted.text.encode())
            await self._record(doc, attempt, ev.DocumentParsed(
                attempt=attempt, text_key=base + "extracted.txt",
                characters=len(extracted.text)))
        elif doc.status == "cleaning":
            assert doc.text_key
            text = (await self.d.storage.load(doc.text_key)).decode()
            cleaned = clean_text(text, rule.pre_processing)
            await self.d.storage.save(base + "cleaned.txt", cleaned.encode())
            await self._record(doc, attempt, ev.DocumentCleaned(
                attempt=attempt, text_key=base + "cleaned.txt", characters=len(cleaned)))
        elif doc.status == "splitting":
            await self._split(doc, rule, attempt, base)
        elif doc.status == "indexing":
            await self._index(doc, dataset, attempt)

    async def _split(self, doc: Document, rule: ProcessRule, attempt: int, base: str) -> None:
        assert doc.cleaned_key
        text = (await self.d.storage.load(doc.cleaned_key)).decode()
        count = self.d.embeddings.count_tokens
        if rule.mode == "hierarchical":
            assert rule.subchunk_segmentation and rule.parent_mode
            parents = await asyncio.to_thread(
                split_hierarchical, text, rule.segmentation, rule.subchunk_segmentation, count,
                rule.parent_mode)
            pieces = [(p.content, p.children) for p in parents]
        else:
            pieces = [(c, []) for c in await asyncio.to_thread(
                split_text, text, rule.segmentation, count, rule.mode == "automatic")]
        chunks: list[Chunk] = []
        segments: list[Segment] = []
        for position, (content, children) in enumerate(pieces, start=1):
            segment_id = segment_id_for(doc.id, attempt, position)
            child_data = [ev.ChildChunkData(id=child_id_for(segment_id, i), content=c,
                                            position=i, word_count=len(c))
                          for i, c in enumerate(children, start=1)]
            chunk = Chunk(str(segment_id), content, len(content), count(content),
                          [c.model_dump(mode="json") for c in child_data])
            chunks.append(chunk)
            segment = Segment(segment_id)
            segment.create(ev.SegmentCreated(
                dataset_id=doc.dataset_id, document_id=doc.id, attempt=attempt,
                position=position, content=content, word_count=chunk.word_count,
                tokens=chunk.tokens, index_node_hash=content_hash(content), child_chunks=child_data,
            ), self.ctx)
            segments.append(segment)
        await self.d.storage.save(base + "chunks.json",
                                  orjson.dumps([c.__dict__ for c in chunks]))
        # The split and all its segments in one transaction: both or neither.
        await self._record(doc, attempt, ev.DocumentSplit(
            attempt=attempt, chunks_key=base + "chunks.json", total_segments=len(chunks),
            word_count=sum(c.word_count for c in chunks),
            tokens=sum(c.tokens for c in chunks)), extra=segments)

    async def _index(self, doc: Document, dataset: Dataset, attempt: int) -> None:
        assert doc.chunks_key
        chunks = [Chunk(**c) for c in orjson.loads(await self.d.storage.load(doc.chunks_key))]
        economy = doc.indexing_technique == "economy"
        store = self.d.keywords if economy else self.d.vectors
        collection = collection_for(doc.dataset_id, economy)
        await store.create(collection, 0 if economy else self.d.embeddings.dimensions)
        if not doc.indexed:
            # Vectors of earlier attempts go before this attempt's arrive.
            await store.delete_by_document_id(collection, str(doc.id))
        pending = [c for c in chunks if c.segment_id not in doc.indexed]
        for start in range(0, len(pending), EMBED_BATCH):
            batch = pending[start:start + EMBED_BATCH]
            await store.add_texts(collection, await self._vector_documents(doc, batch, economy))
            await self._record(doc, attempt, ev.DocumentSegmentsIndexed(
                attempt=attempt, segment_ids=[UUID(c.segment_id) for c in batch],
                completed_segments=len(doc.indexed) + len(batch)))
        await self._record(doc, attempt, ev.DocumentIndexingCompleted(
            attempt=attempt, completed_segments=len(chunks)))

    async def _vector_documents(self, doc: Document, batch: list[Chunk],
                                economy: bool) -> list[VectorDocument]:
        # Hierarchical documents embed their child chunks, each pointing at its parent.
        units = [(c.segment_id, child["id"], child["content"]) for c in batch
                 for child in c.children] or [(c.segment_id, c.segment_id, c.content)
                                              for c in batch]
        vectors: list[list[float] | None] = (
            [None] * len(units) if economy
            else list(await self.d.embeddings.embed_documents([u[2] for u in units])))
        return [
            VectorDocument(id=unit_id, text=text, vector=vector, metadata={
                "dataset_id": str(doc.dataset_id), "document_id": str(doc.id),
                "segment_id": segment_id, "doc_hash": content_hash(text)})
            for (segment_id, unit_id, text), vector in zip(units, vectors, strict=True)
        ]


async def index_segment(deps: IndexingDeps, segment_id: UUID, cause: Envelope) -> None:
    """A segment added or edited by hand: (re)write its vector, then record it indexed."""
    store = deps.store
    segment = Segment.replay(segment_id, await asyncio.to_thread(store.load, segment_id))
    if not segment.exists or segment.deleted:
        return
    document = Document.replay(segment.document_id,
                               await asyncio.to_thread(store.load, segment.document_id))
    if document.deleted or segment.attempt != document.split_attempt:
        return
    economy = document.indexing_technique == "economy"
    target = deps.keywords if economy else deps.vectors
    collection = collection_for(segment.dataset_id, economy)
    await target.create(collection, 0 if economy else deps.embeddings.dimensions)
    data = segment.data
    children = data["child_chunks"]
    ids = [c["id"] for c in children] or [str(segment_id)]
    # Units this segment no longer has (removed child chunks, or the parent's own vector
    # once it has children) must not be found any more.
    stale = (segment.child_ids_seen | {str(segment_id)}) - set(ids)
    if stale:
        await target.delete_by_ids(collection, sorted(stale))
    if not data["enabled"]:
        await target.delete_by_ids(collection, ids)
    else:
        texts = [c["content"] for c in children] or [data["content"]]
        vectors: list[list[float] | None] = (
            [None] * len(texts) if economy
            else list(await deps.embeddings.embed_documents(texts)))
        await target.add_texts(collection, [
            VectorDocument(id=i, text=t, vector=v, metadata={
                "dataset_id": str(segment.dataset_id), "document_id": str(document.id),
                "segment_id": str(segment_id), "doc_hash": content_hash(t)})
            for i, t, v in zip(ids, texts, vectors, strict=True)])
    ctx = Context(tenant_id=cause.tenant_id, actor_id=None,
                  correlation_id=cause.correlation_id, causation_id=cause.event_id)
    segment.record(ev.SegmentIndexed(index_node_hash=content_hash(data["content"])), ctx)
    try:
        await asyncio.to_thread(store.append, segment.pending)
    except ConcurrencyConflict:
        pass  # edited again meanwhile: that edit's own job writes the newer vector


async def handle_indexing_message(deps: IndexingDeps, message: Message) -> None:
    event = Envelope.from_json(message.value)
    try:
        if event.type in ("DocumentIndexingRequested", "DocumentIndexingResumed"):
            await IndexingJob(deps, event.aggregate_id, event).run()
        elif event.type in ("SegmentCreated", "SegmentUpdated"):
            await index_segment(deps, event.aggregate_id, event)
    except StaleWork as stale:
        log.info("indexing job stopped: %s", stale)


async def fail_document(deps: IndexingDeps, message: Message, exc: BaseException) -> None:
    """Dead-lettered job: the document must not sit in a processing state forever."""
    event = Envelope.from_json(message.value)
    if not event.type.startswith("DocumentIndexing"):
        return
    for _ in range(MAX_STAGE_CONFLICTS):
        doc = Document.replay(event.aggregate_id,
                              await asyncio.to_thread(deps.store.load, event.aggregate_id))
        doc.fail(doc.attempt, f"Indexing failed after retries: {exc!r}",
                 Context(tenant_id=event.tenant_id, actor_id=None,
                         correlation_id=event.correlation_id, causation_id=event.event_id))
        if not doc.pending:
            return
        try:
            await asyncio.to_thread(deps.store.append, doc.pending)
            return
        except ConcurrencyConflict:
            continue


async def cleanup(deps: IndexingDeps, message: Message) -> None:
    """Deleted documents, datasets and segments take their vectors and files with them."""
    event = Envelope.from_json(message.value)
    p = event.payload
    if event.type == "DocumentDeleted":
        dataset_id = UUID(p["dataset_id"])
        for economy, store in ((False, deps.vectors), (True, deps.keywords)):
            await store.delete_by_document_id(collection_for(dataset_id, economy),
                                              str(event.aggregate_id))
        await deps.storage.delete_prefix(document_prefix(dataset_id, event.aggregate_id))
    elif event.type == "DatasetDeleted":
        await deps.vectors.delete(collection_for(event.aggregate_id, False))
        await deps.keywords.delete(collection_for(event.aggregate_id, True))
        await deps.storage.delete_prefix(f"datasets/{event.aggregate_id}/")
    elif event.type == "SegmentDeleted":
        segment = Segment.replay(event.aggregate_id,
                                 await asyncio.to_thread(deps.store.load, event.aggregate_id))
        # every unit it ever had: an edit's re-index may not have run yet
        ids = sorted(segment.child_ids_seen | {str(event.aggregate_id)})
        dataset_id = UUID(p["dataset_id"])
        for economy, store in ((False, deps.vectors), (True, deps.keywords)):
            await store.delete_by_ids(collection_for(dataset_id, economy), ids)
