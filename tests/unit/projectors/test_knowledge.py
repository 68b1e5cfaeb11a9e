"""The knowledge context's projectors: datasets, documents, segments, tags, metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import RowMapping

from events.envelope import Envelope
from projections.knowledge import queries as kq
from projections.knowledge.tables import (
    dataset_metadata_fields,
    dataset_queries,
    datasets,
    documents,
    segment_hits,
    segments,
    tag_bindings,
    tags,
)
from schemas.base import EventPayload
from schemas.knowledge import events as kev
from schemas.knowledge.naming import content_hash
from tests.unit.projectors.harness import (
    PROJECTION,
    World,
    apply,
    exercises,
    stored,
)

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


async def test_stages_of_documents_in_one_batch_end_as_applied_one_by_one(
        world: World) -> None:
    """Consecutive plain stages of two documents, interleaved, applied as one batch (a
    rebuild's fold, or a processor's batch): each document shows its last stage, a retry
    requested after an earlier attempt's stages clearing their times."""
    dataset_id = await new_dataset(world)
    first = await new_document(world, dataset_id, "a.txt")
    second = await new_document(world, dataset_id, "b.txt", position=2)
    batch = [await world.envelope("Document", document, payload) for document, payload in (
        (first, kev.DocumentProcessingStarted(attempt=1)),
        (second, kev.DocumentProcessingStarted(attempt=1)),
        (first, kev.DocumentParsed(attempt=1, text_key="t", characters=80)),
        (second, kev.DocumentParsed(attempt=1, text_key="t", characters=80)),
        (first, kev.DocumentCleaned(attempt=1, text_key="c", characters=70)),
        (first, kev.DocumentIndexingRequested(attempt=2, lane="priority", reason="retry")))]
    async with world.engine.begin() as conn:
        await PROJECTION.apply(conn, batch)

    retried, parsed = await world.one(documents, first), await world.one(documents, second)
    assert {k: retried[k] for k in ("attempt", "indexing_status", "processing_started_at",
                                    "parsing_completed_at", "cleaning_completed_at",
                                    "updated_at")} == {
        "attempt": 2, "indexing_status": "waiting", "processing_started_at": None,
        "parsing_completed_at": None, "cleaning_completed_at": None,
        "updated_at": stored(batch[5])}
    assert {k: parsed[k] for k in ("attempt", "indexing_status", "processing_started_at",
                                   "parsing_completed_at", "updated_at")} == {
        "attempt": 1, "indexing_status": "cleaning", "processing_started_at": stored(batch[1]),
        "parsing_completed_at": stored(batch[3]), "updated_at": stored(batch[3])}


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
    assert await world.rows(dataset_queries) == []


@exercises(kev.SegmentsHit)
async def test_a_datasets_latest_retrieval_is_kept_whatever_the_order(world: World) -> None:
    dataset_id = uuid4()  # its creation not applied yet (another partition): still counts
    empty = kev.SegmentsHit(dataset_id=dataset_id, hits=[])  # a retrieval that found nothing
    earlier = await world.envelope("RetrievalHits", uuid4(), empty)
    later = await world.emit("RetrievalHits", uuid4(), empty)
    await apply(world, earlier)
    assert [(r["dataset_id"], r["last_queried_at"]) for r in await world.rows(
        dataset_queries)] == [(dataset_id, stored(later))]


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
