"""Command handlers of the knowledge context: datasets, documents, segments.

(Metadata and child chunks: `meta_handlers.py`; tags: `tags.py`.)
"""

from __future__ import annotations

from typing import Any

from commands.knowledge.aggregates import (
    Dataset,
    DatasetName,
    Document,
    RetrievalHits,
    Segment,
    visible_dataset,
    visible_document,
)
from commands.mail.aggregates import request_mail
from commands.registry import command_handlers
from commands.unit_of_work import UnitOfWork
from schemas.errors import BadRequest
from schemas.knowledge import commands as cmd
from schemas.knowledge import events as ev
from schemas.knowledge.naming import INDEXING_QUEUE_NAME, content_hash, dataset_name_id


def create_dataset(c: cmd.CreateDataset, uow: UnitOfWork) -> dict[str, Any]:
    assert uow.ctx.actor_id is not None
    uow.get(DatasetName, dataset_name_id(uow.ctx.tenant_id, c.name)).claim(c.dataset_id, uow.ctx)
    uow.get(Dataset, c.dataset_id).create(
        ev.DatasetCreated(**c.model_dump(exclude={"dataset_id"}), created_by=uow.ctx.actor_id),
        uow.ctx)
    return {"dataset_id": str(c.dataset_id)}


def update_dataset(c: cmd.UpdateDataset, uow: UnitOfWork) -> dict[str, Any]:
    dataset = visible_dataset(uow, c.dataset_id)
    old_name = dataset.settings["name"]
    if c.name is not None and c.name != old_name:
        uow.get(DatasetName, dataset_name_id(uow.ctx.tenant_id, c.name)).claim(dataset.id,
                                                                              uow.ctx)
        uow.get(DatasetName, dataset_name_id(uow.ctx.tenant_id, old_name)).release(dataset.id,
                                                                                  uow.ctx)
    model_before = dataset.embedding_model
    dataset.update(c.model_dump(exclude={"dataset_id", "document_ids"}), uow.ctx)
    if (dataset.embedding_model != model_before
            and dataset.settings.get("indexing_technique") == "high_quality"):
        # Vectors of two models never mix: every document is embedded again by the new one
        # (into its own collection; cleanup drops the old model's).
        for document_id in c.document_ids:
            document = uow.get(Document, document_id)
            if document.exists and not document.deleted and document.dataset_id == dataset.id:
                document.request_indexing("embedding_model_changed", uow.ctx, supersede=True)
    return {"dataset_id": str(c.dataset_id)}


def delete_dataset(c: cmd.DeleteDataset, uow: UnitOfWork) -> dict[str, Any]:
    # Its documents, segments, vectors and files go with it: the cleanup processor
    # reacts to DatasetDeleted.
    dataset = visible_dataset(uow, c.dataset_id)
    dataset.delete(uow.ctx)
    uow.get(DatasetName, dataset_name_id(uow.ctx.tenant_id, dataset.settings["name"])).release(
        dataset.id, uow.ctx)
    return {"dataset_id": str(c.dataset_id)}


def create_document(c: cmd.CreateDocument, uow: UnitOfWork) -> dict[str, Any]:
    assert uow.ctx.actor_id is not None
    visible_dataset(uow, c.dataset_id).adopt_indexing_technique(c.indexing_technique, uow.ctx)
    payload = ev.DocumentCreated(
        **c.model_dump(exclude={"document_id", "lane", "source"}),
        source=c.source, data_source_type="upload_file",
        created_from="api", created_by=uow.ctx.actor_id)
    uow.get(Document, c.document_id).create(payload, c.lane, uow.ctx)
    return {"document_id": str(c.document_id), "batch": c.batch}


def replace_document_source(c: cmd.ReplaceDocumentSource, uow: UnitOfWork) -> dict[str, Any]:
    assert uow.ctx.actor_id is not None
    document = visible_document(uow, c.dataset_id, c.document_id)
    document.replace_source(ev.DocumentSourceReplaced(
        name=c.name or document.name, source=c.source,
        process_rule=c.process_rule or document.process_rule,
        process_rule_id=c.process_rule_id or document.process_rule_id,
        updated_by=uow.ctx.actor_id,
    ), c.lane, uow.ctx)
    return {"document_id": str(c.document_id)}


def control_document_indexing(c: cmd.ControlDocumentIndexing,
                              uow: UnitOfWork) -> dict[str, Any]:
    for document_id in c.document_ids:
        document = visible_document(uow, c.dataset_id, document_id)
        if c.action == "pause":
            document.pause(uow.ctx)
        elif c.action == "resume":
            document.resume(uow.ctx)
        else:
            document.request_indexing(c.action, uow.ctx)
    return {"document_ids": [str(d) for d in c.document_ids]}


def update_document_status(c: cmd.UpdateDocumentStatus, uow: UnitOfWork) -> dict[str, Any]:
    # action -> (enabled, archived); None leaves the flag as it is
    enabled, archived = {"enable": (True, None), "disable": (False, None),
                         "archive": (None, True), "un_archive": (None, False)}[c.action]
    for document_id in c.document_ids:
        visible_document(uow, c.dataset_id, document_id).set_flags(uow.ctx, enabled=enabled,
                                                           archived=archived)
    return {"document_ids": [str(d) for d in c.document_ids]}


def rename_document(c: cmd.RenameDocument, uow: UnitOfWork) -> dict[str, Any]:
    visible_document(uow, c.dataset_id, c.document_id).set_flags(uow.ctx, name=c.name)
    return {"document_id": str(c.document_id)}


def delete_document(c: cmd.DeleteDocument, uow: UnitOfWork) -> dict[str, Any]:
    visible_document(uow, c.dataset_id, c.document_id).delete(uow.ctx)
    return {"document_id": str(c.document_id)}


def create_segments(c: cmd.CreateSegments, uow: UnitOfWork) -> dict[str, Any]:
    document = visible_document(uow, c.dataset_id, c.document_id)
    if document.status != "completed":
        raise BadRequest("The document is not indexed yet; add segments once it is completed.")
    for offset, new in enumerate(c.segments):
        uow.get(Segment, new.segment_id).create(ev.SegmentCreated(
            dataset_id=c.dataset_id, document_id=c.document_id,
            attempt=document.split_attempt, position=c.first_position + offset,
            content=new.content, answer=new.answer, keywords=new.keywords,
            word_count=new.word_count, tokens=new.tokens,
            index_node_hash=content_hash(new.content), created_by=uow.ctx.actor_id,
        ), uow.ctx)
    return {"segment_ids": [str(s.segment_id) for s in c.segments]}


def _indexed_document(uow: UnitOfWork, c: cmd.UpdateSegment | cmd.DeleteSegment) -> Document:
    document = visible_document(uow, c.dataset_id, c.document_id)
    if document.status != "completed":
        # A running attempt writes the vectors of its own split; edits would race it.
        raise BadRequest("The document is not indexed yet; edit segments once it is completed.")
    return document


def update_segment(c: cmd.UpdateSegment, uow: UnitOfWork) -> dict[str, Any]:
    document = _indexed_document(uow, c)
    segment = uow.get(Segment, c.segment_id)
    segment.ensure_live_in(document)
    data = segment.data
    content = c.content if c.content is not None else data.content
    same_text = content == data.content  # then the counts stay as they are
    changed = ev.SegmentUpdated(
        content=content,
        answer=c.answer if c.answer is not None else data.answer,
        keywords=c.keywords if c.keywords is not None else data.keywords,
        enabled=c.enabled if c.enabled is not None else data.enabled,
        word_count=c.word_count if c.word_count is not None else len(content),
        tokens=c.tokens if c.tokens is not None else data.tokens if same_text else 0,
        index_node_hash=content_hash(content),
        child_chunks=data.child_chunks,
        updated_by=uow.ctx.actor_id,
    )
    unchanged = all(getattr(changed, k) == getattr(data, k)
                    for k in ("content", "answer", "keywords", "enabled"))
    if not unchanged:
        segment.update(changed, uow.ctx)
    return {"segment_id": str(c.segment_id)}


def delete_segment(c: cmd.DeleteSegment, uow: UnitOfWork) -> dict[str, Any]:
    document = _indexed_document(uow, c)
    segment = uow.get(Segment, c.segment_id)
    segment.ensure_live_in(document)
    segment.delete(uow.ctx)
    return {"segment_id": str(c.segment_id)}


def record_segment_hits(c: cmd.RecordSegmentHits, uow: UnitOfWork) -> dict[str, Any]:
    visible_dataset(uow, c.dataset_id)  # a deleted dataset's late hits are dropped here
    uow.new(RetrievalHits, c.batch_id).record_hits(c.dataset_id, c.hits, uow.ctx)
    return {"batch_id": str(c.batch_id)}


def alert_indexing_backlog(c: cmd.AlertIndexingBacklog, uow: UnitOfWork) -> dict[str, Any]:
    params = {"queue_name": INDEXING_QUEUE_NAME, "pending_tasks_count": c.queue_length,
              "threshold": c.threshold, "alert_time": c.alert_time}
    mails = [request_mail(uow, f"queue_monitor_alert:{to}", "queue_monitor_alert", to,
                          language="en-US", params=params) for to in c.emails]
    return {"mail_ids": [str(m) for m in mails]}


HANDLERS = command_handlers(
    create_dataset, update_dataset, delete_dataset, create_document, replace_document_source,
    control_document_indexing, update_document_status, rename_document, delete_document,
    create_segments, update_segment, delete_segment, record_segment_hits, alert_indexing_backlog,
)
