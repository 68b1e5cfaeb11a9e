"""The knowledge context's command handlers: datasets, documents, segments, child
chunks, metadata, tags."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from schemas import errors
from schemas.knowledge import commands as kc
from schemas.knowledge import events as ke
from schemas.knowledge.naming import (
    HIERARCHICAL,
    TAG_TYPE,
    child_id_for,
    content_hash,
    dataset_name_id,
    tag_name_id,
)
from tests.unit.handlers.harness import (
    AUTOMATIC_RULE,
    RETRIEVAL,
    Ran,
    Workspace,
    World,
    accepted,
    covers,
    rejected,
    source,
    unchanged,
)

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


@covers(kc.AlertIndexingBacklog)
def test_an_indexing_backlog_alert_asks_for_one_mail_per_address(world: World) -> None:
    alert = kc.AlertIndexingBacklog(alert_id=uuid4(), queue_length=250, threshold=200,
                                    emails=["ops@example.com", "oncall@example.com"],
                                    alert_time="2026-12-05 08:00:00")
    ran = accepted(world.run(alert))
    asked = [e.payload for e in ran.events]
    assert [(m.template, m.to) for m in asked] == [  # type: ignore[attr-defined]
        ("queue_monitor_alert", "ops@example.com"), ("queue_monitor_alert", "oncall@example.com")]
    assert asked[0].params == {  # type: ignore[attr-defined]
        "queue_name": "dataset", "pending_tasks_count": 250, "threshold": 200,
        "alert_time": "2026-12-05 08:00:00"}
