"""Knowledge aggregates: datasets, documents (with their indexing state machine), segments.

A document's indexing runs in attempts. Every stage of an attempt is an event recorded by
the indexing processor through the stage methods below, which refuse work that is stale
(an older attempt, a paused or deleted document): that is how a redelivered or superseded
job finds out it must stop, without locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from commands.aggregate import Aggregate, Context, NameClaim
from schemas.errors import (
    BadRequest,
    DatasetNameDuplicate,
    DatasetNotFound,
    DocumentNotFound,
    DocumentNotPausable,
    MetadataNotFound,
    SegmentNotFound,
)
from schemas.knowledge import events as ev
from schemas.knowledge.naming import BUILT_IN_METADATA_FIELDS, METADATA_TYPES, content_hash

if TYPE_CHECKING:
    from commands.unit_of_work import UnitOfWork

# Dify's document states; "processing" ones have an owner that moves them on.
PROCESSING_STATES = ("waiting", "parsing", "cleaning", "splitting", "indexing")


class StaleWork(Exception):
    """The indexing job is for an attempt that no longer runs (paused, superseded, deleted)."""


class DatasetName(NameClaim):
    """A workspace's dataset name, held by one dataset (see NameClaim)."""

    duplicate = DatasetNameDuplicate

    def claimed(self, holder: UUID) -> ev.DatasetNameClaimed:
        return ev.DatasetNameClaimed(dataset_id=holder)

    def released(self, holder: UUID) -> ev.DatasetNameReleased:
        return ev.DatasetNameReleased(dataset_id=holder)

    def apply_DatasetNameClaimed(self, p: ev.DatasetNameClaimed) -> None:
        self.holder = p.dataset_id

    def apply_DatasetNameReleased(self, p: ev.DatasetNameReleased) -> None:
        self.holder = None


class Dataset(Aggregate):
    deleted = False

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.metadata_fields: dict[str, dict[str, str]] = {}  # field id -> {name, type}
        self.built_in_field_enabled = False

    def apply_DatasetCreated(self, p: ev.DatasetCreated) -> None:
        self.settings = p.model_dump(exclude={"created_by"})

    def apply_DatasetUpdated(self, p: ev.DatasetUpdated) -> None:
        self.settings = p.model_dump(exclude={"updated_by"})

    def apply_DatasetDeleted(self, p: ev.DatasetDeleted) -> None:
        self.deleted = True

    def ensure_visible_to(self, tenant_id: UUID | None) -> None:
        if not self.exists or self.deleted or self.tenant_id != tenant_id:
            raise DatasetNotFound()

    def create(self, payload: ev.DatasetCreated, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("Dataset already exists.")
        self.record(payload, ctx)

    def update(self, changes: dict[str, Any], ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        merged = {**self.settings, **{k: v for k, v in changes.items() if v is not None}}
        if merged == self.settings:
            return
        assert ctx.actor_id is not None
        self.record(ev.DatasetUpdated(**merged, updated_by=ctx.actor_id), ctx)

    @property
    def embedding_model(self) -> tuple[str | None, str | None]:
        return (self.settings.get("embedding_model_provider"),
                self.settings.get("embedding_model"))

    def adopt_indexing_technique(self, technique: str, ctx: Context) -> None:
        """A dataset created without a technique takes its first document's."""
        if self.settings.get("indexing_technique") is None:
            self.update({"indexing_technique": technique}, ctx)

    def delete(self, ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        assert ctx.actor_id is not None
        self.record(ev.DatasetDeleted(deleted_by=ctx.actor_id), ctx)

    # --- metadata fields: names are unique within the dataset, decided here -------------

    def apply_DatasetMetadataFieldAdded(self, p: ev.DatasetMetadataFieldAdded) -> None:
        self.metadata_fields[str(p.metadata_id)] = {"name": p.name, "type": p.type}

    def apply_DatasetMetadataFieldRenamed(self, p: ev.DatasetMetadataFieldRenamed) -> None:
        self.metadata_fields[str(p.metadata_id)]["name"] = p.name

    def apply_DatasetMetadataFieldDeleted(self, p: ev.DatasetMetadataFieldDeleted) -> None:
        self.metadata_fields.pop(str(p.metadata_id), None)

    def apply_DatasetBuiltInFieldsToggled(self, p: ev.DatasetBuiltInFieldsToggled) -> None:
        self.built_in_field_enabled = p.enabled

    def _check_metadata_name(self, name: str, except_id: str | None = None) -> None:
        # Dify's messages (MetadataService).
        if not name:
            raise BadRequest("Metadata name cannot be empty.")
        if len(name) > 255:
            raise BadRequest("Metadata name cannot exceed 255 characters.")
        if name in BUILT_IN_METADATA_FIELDS:
            raise BadRequest("Metadata name already exists in Built-in fields.")
        if any(f["name"] == name for i, f in self.metadata_fields.items() if i != except_id):
            raise BadRequest("Metadata name already exists.")

    def metadata_field(self, metadata_id: UUID) -> dict[str, str]:
        field = self.metadata_fields.get(str(metadata_id))
        if field is None:
            raise MetadataNotFound()
        return field

    def add_metadata_field(self, metadata_id: UUID, name: str, type_: str,
                           ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        if type_ not in METADATA_TYPES:
            raise BadRequest(f"Metadata type must be one of {', '.join(METADATA_TYPES)}.")
        if str(metadata_id) in self.metadata_fields:
            raise BadRequest("Metadata field already exists.")
        self._check_metadata_name(name)
        self.record(ev.DatasetMetadataFieldAdded(metadata_id=metadata_id, name=name, type=type_,
                                                 created_by=ctx.actor_id), ctx)

    def rename_metadata_field(self, metadata_id: UUID, name: str, ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        if self.metadata_field(metadata_id)["name"] == name:
            return  # nothing changes: no event
        self._check_metadata_name(name, except_id=str(metadata_id))
        self.record(ev.DatasetMetadataFieldRenamed(metadata_id=metadata_id, name=name,
                                                   updated_by=ctx.actor_id), ctx)

    def delete_metadata_field(self, metadata_id: UUID, ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        self.metadata_field(metadata_id)
        self.record(ev.DatasetMetadataFieldDeleted(metadata_id=metadata_id,
                                                   deleted_by=ctx.actor_id), ctx)

    def toggle_built_in_fields(self, enabled: bool, ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        if self.built_in_field_enabled != enabled:
            self.record(ev.DatasetBuiltInFieldsToggled(enabled=enabled,
                                                       updated_by=ctx.actor_id), ctx)


class Document(Aggregate):

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.deleted = False
        self.paused = False
        self.status = "waiting"
        self.attempt = 0
        self.lane = "bulk"
        self.split_attempt = 0  # the attempt whose segments are live
        self.text_key: str | None = None
        self.cleaned_key: str | None = None
        self.chunks_key: str | None = None
        self.total_segments = 0
        self.indexed: set[str] = set()
        self.enabled = True
        self.archived = False
        self.metadata: dict[str, Any] = {}  # metadata field id -> value

    # --- applying events -----------------------------------------------------------------

    def apply_DocumentCreated(self, p: ev.DocumentCreated) -> None:
        self.dataset_id = p.dataset_id
        self.name = p.name
        self.source = p.source
        self.process_rule, self.process_rule_id = p.process_rule, p.process_rule_id
        self.doc_form = p.doc_form
        self.indexing_technique = p.indexing_technique

    def apply_DocumentSourceReplaced(self, p: ev.DocumentSourceReplaced) -> None:
        self.name, self.source = p.name, p.source
        self.process_rule, self.process_rule_id = p.process_rule, p.process_rule_id

    def apply_DocumentIndexingRequested(self, p: ev.DocumentIndexingRequested) -> None:
        self.attempt, self.lane = p.attempt, p.lane
        self.status, self.paused = "waiting", False
        self.text_key = self.cleaned_key = self.chunks_key = None
        self.indexed = set()

    def apply_DocumentProcessingStarted(self, p: ev.DocumentProcessingStarted) -> None:
        self.status = "parsing"

    def apply_DocumentParsed(self, p: ev.DocumentParsed) -> None:
        self.status, self.text_key = "cleaning", p.text_key

    def apply_DocumentCleaned(self, p: ev.DocumentCleaned) -> None:
        self.status, self.cleaned_key = "splitting", p.text_key

    def apply_DocumentSplit(self, p: ev.DocumentSplit) -> None:
        self.status, self.chunks_key = "indexing", p.chunks_key
        self.total_segments, self.split_attempt = p.total_segments, p.attempt

    def apply_DocumentSegmentsIndexed(self, p: ev.DocumentSegmentsIndexed) -> None:
        self.indexed.update(str(s) for s in p.segment_ids)

    def apply_DocumentIndexingCompleted(self, p: ev.DocumentIndexingCompleted) -> None:
        self.status = "completed"

    def apply_DocumentIndexingFailed(self, p: ev.DocumentIndexingFailed) -> None:
        self.status = "error"

    def apply_DocumentIndexingPaused(self, p: ev.DocumentIndexingPaused) -> None:
        self.paused = True

    def apply_DocumentIndexingResumed(self, p: ev.DocumentIndexingResumed) -> None:
        self.paused, self.lane = False, p.lane

    def apply_DocumentUpdated(self, p: ev.DocumentUpdated) -> None:
        self.name, self.enabled, self.archived = p.name, p.enabled, p.archived

    def apply_DocumentDeleted(self, p: ev.DocumentDeleted) -> None:
        self.deleted = True

    def apply_DocumentMetadataUpdated(self, p: ev.DocumentMetadataUpdated) -> None:
        self.metadata = dict(p.values)

    def set_metadata(self, values: dict[str, Any], ctx: Context) -> None:
        """Values are already checked against the dataset's fields (see the handler)."""
        if values != self.metadata:
            self.record(ev.DocumentMetadataUpdated(values=values, updated_by=ctx.actor_id), ctx)

    # --- API decisions -------------------------------------------------------------------

    def ensure_in(self, dataset_id: UUID, tenant_id: UUID | None) -> None:
        if (not self.exists or self.deleted or self.tenant_id != tenant_id
                or self.dataset_id != dataset_id):
            raise DocumentNotFound()

    def create(self, payload: ev.DocumentCreated, lane: str, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("Document already exists.")
        self.record(payload, ctx)
        self.record(ev.DocumentIndexingRequested(attempt=1, lane=lane, reason="created"), ctx)

    def replace_source(self, payload: ev.DocumentSourceReplaced, lane: str, ctx: Context) -> None:
        self.record(payload, ctx)
        self.record(ev.DocumentIndexingRequested(attempt=self.attempt + 1, lane=lane,
                                                 reason="updated"), ctx)

    def request_indexing(self, reason: str, ctx: Context, *, supersede: bool = False) -> None:
        """Retry (after an error) or re-index (e.g. after segment edits) as a new attempt.
        `supersede`: also replace a running attempt (its job stops at its next record)."""
        if self.status in PROCESSING_STATES and not self.paused and not supersede:
            raise BadRequest("Document is already being indexed.")
        self.record(ev.DocumentIndexingRequested(attempt=self.attempt + 1, lane=self.lane,
                                                 reason=reason), ctx)

    @property
    def processing(self) -> bool:
        return self.status in PROCESSING_STATES

    def pause(self, ctx: Context) -> None:
        if not self.processing or self.paused:
            raise DocumentNotPausable()
        self.record(ev.DocumentIndexingPaused(paused_by=ctx.actor_id), ctx)

    def resume(self, ctx: Context) -> None:
        if not self.paused:
            raise BadRequest("Document is not paused.")
        self.record(ev.DocumentIndexingResumed(lane=self.lane), ctx)

    def set_flags(self, ctx: Context, *, name: str | None = None, enabled: bool | None = None,
                  archived: bool | None = None) -> None:
        new = (name or self.name, self.enabled if enabled is None else enabled,
               self.archived if archived is None else archived)
        if new == (self.name, self.enabled, self.archived):
            return
        self.record(ev.DocumentUpdated(name=new[0], enabled=new[1], archived=new[2],
                                       updated_by=ctx.actor_id), ctx)

    def delete(self, ctx: Context) -> None:
        self.record(ev.DocumentDeleted(dataset_id=self.dataset_id,
                                       source_key=self.source.key), ctx)

    # --- indexing stages (recorded by the indexing processor) ----------------------------

    def ensure_current(self, attempt: int) -> None:
        if self.deleted or self.paused or attempt != self.attempt or not self.processing:
            raise StaleWork(f"document {self.id}: attempt {attempt} is not running "
                            f"(current {self.attempt}, {self.status}, paused={self.paused})")

    def stage(self, attempt: int, payload: ev.EventPayload, ctx: Context) -> None:
        self.ensure_current(attempt)
        self.record(payload, ctx)

    def fail(self, attempt: int, error: str, ctx: Context) -> None:
        if self.deleted or attempt != self.attempt or self.status in ("completed", "error"):
            return  # nothing to mark: the attempt ended or was replaced
        self.record(ev.DocumentIndexingFailed(attempt=attempt, error=error[:2000]), ctx)


@dataclass(frozen=True)
class SegmentContent:
    """What a segment says now: its text, keywords, child chunks and whether it is found."""

    content: str
    answer: str
    keywords: list[str]
    child_chunks: list[ev.ChildChunkData]
    enabled: bool
    word_count: int
    tokens: int


class Segment(Aggregate):
    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.deleted = False
        # Every child chunk id this segment ever had: the indexer deletes the vectors of
        # those no longer present.
        self.child_ids_seen: set[str] = set()
        self.indexed_hash: str | None = None  # content hash last recorded indexed

    def apply_SegmentCreated(self, p: ev.SegmentCreated) -> None:
        self.dataset_id, self.document_id, self.attempt = p.dataset_id, p.document_id, p.attempt
        self.data = SegmentContent(
            content=p.content, answer=p.answer, keywords=list(p.keywords),
            child_chunks=list(p.child_chunks), enabled=True, word_count=p.word_count,
            tokens=p.tokens)
        self.child_ids_seen |= {str(c.id) for c in p.child_chunks}
        self.indexed_hash = None

    def apply_SegmentUpdated(self, p: ev.SegmentUpdated) -> None:
        self.data = SegmentContent(
            content=p.content, answer=p.answer, keywords=list(p.keywords),
            child_chunks=list(p.child_chunks), enabled=p.enabled, word_count=p.word_count,
            tokens=p.tokens)
        self.child_ids_seen |= {str(c.id) for c in p.child_chunks}
        self.indexed_hash = None

    def apply_SegmentDeleted(self, p: ev.SegmentDeleted) -> None:
        self.deleted = True

    def apply_SegmentIndexed(self, p: ev.SegmentIndexed) -> None:
        self.indexed_hash = p.index_node_hash

    def ensure_live_in(self, document: Document) -> None:
        if (not self.exists or self.deleted or self.document_id != document.id
                or self.attempt != document.split_attempt):
            raise SegmentNotFound()

    def create(self, payload: ev.SegmentCreated, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("Segment already exists.")
        self.record(payload, ctx)

    def update(self, payload: ev.SegmentUpdated, ctx: Context) -> None:
        self.record(payload, ctx)

    def set_child_chunks(self, children: list[ev.ChildChunkData], ctx: Context) -> None:
        """A child chunk added, edited or removed: the segment as it is with the new list
        (the indexing processor re-embeds it and drops the vectors of removed children)."""
        d = self.data
        self.record(ev.SegmentUpdated(
            content=d.content, answer=d.answer, keywords=d.keywords,
            word_count=d.word_count, tokens=d.tokens,
            index_node_hash=content_hash(d.content), enabled=d.enabled,
            child_chunks=children, updated_by=ctx.actor_id), ctx)

    def delete(self, ctx: Context) -> None:
        self.record(ev.SegmentDeleted(dataset_id=self.dataset_id, document_id=self.document_id),
                    ctx)


class RetrievalHits(Aggregate):
    """One batch of retrieval hits, recorded under a fresh id with `UnitOfWork.new`: no
    history to load, so recording costs one append however many batches came before (the
    store refuses the id if it is taken)."""

    def apply_SegmentsHit(self, p: ev.SegmentsHit) -> None:
        pass

    def record_hits(self, dataset_id: UUID, hits: list[ev.SegmentHits], ctx: Context) -> None:
        self.record(ev.SegmentsHit(dataset_id=dataset_id, hits=hits), ctx)


def visible_dataset(uow: UnitOfWork, dataset_id: UUID) -> Dataset:
    """The caller's workspace's dataset, or DatasetNotFound."""
    dataset = uow.get(Dataset, dataset_id)
    dataset.ensure_visible_to(uow.ctx.tenant_id)
    return dataset


def visible_document(uow: UnitOfWork, dataset_id: UUID, document_id: UUID) -> Document:
    """A document of that dataset, or DatasetNotFound / DocumentNotFound."""
    visible_dataset(uow, dataset_id)
    document = uow.get(Document, document_id)
    document.ensure_in(dataset_id, uow.ctx.tenant_id)
    return document
