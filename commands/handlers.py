"""Command handlers: small functions, registered in one dict, that load aggregates and decide.

A handler gets the command payload and a unit of work; it returns the result the gateway
answers with. Raising an EddyError rejects the command and records nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from commands.aggregates import SETUP_ID, Account, ApiKey, App, Setup, Workspace
from commands.errors import BadRequest
from commands.knowledge import (
    Dataset,
    Document,
    Segment,
    content_hash,
    visible_dataset,
    visible_document,
)
from commands.knowledge_meta import KNOWLEDGE_META_HANDLERS
from commands.tags import TAG_HANDLERS
from commands.unit_of_work import UnitOfWork
from schemas import commands as cmd
from schemas import events as ev

P = TypeVar("P", bound=cmd.CommandPayload)
Handler = Callable[[Any, UnitOfWork], dict[str, Any]]


def setup_platform(c: cmd.SetupPlatform, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Setup, SETUP_ID).complete(c.account_id, c.workspace_id, uow.ctx)
    uow.get(Account, c.account_id).register(
        c.email, c.name, c.password_hash, c.interface_language, uow.ctx
    )
    uow.get(Workspace, c.workspace_id).create(f"{c.name}'s Workspace", c.account_id, uow.ctx)
    return {"account_id": str(c.account_id), "workspace_id": str(c.workspace_id)}


def create_app(c: cmd.CreateApp, uow: UnitOfWork) -> dict[str, Any]:
    assert uow.ctx.actor_id is not None
    payload = ev.AppCreated(
        **c.model_dump(exclude={"app_id"}), created_by=uow.ctx.actor_id
    )
    uow.get(App, c.app_id).create(payload, uow.ctx)
    return {"app_id": str(c.app_id)}


def update_app(c: cmd.UpdateApp, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).update(c.model_dump(exclude={"app_id"}), uow.ctx)
    return {"app_id": str(c.app_id)}


def delete_app(c: cmd.DeleteApp, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).delete(uow.ctx)
    return {"app_id": str(c.app_id)}


def _ensure_owner_resource(app_id: UUID | None, uow: UnitOfWork) -> None:
    if app_id is not None:
        uow.get(App, app_id).ensure_visible_to(uow.ctx.tenant_id)


def create_api_key(c: cmd.CreateApiKey, uow: UnitOfWork) -> dict[str, Any]:
    _ensure_owner_resource(c.app_id, uow)
    uow.get(ApiKey, c.key_id).create(c.key_type, c.app_id, c.token, uow.ctx)
    return {"key_id": str(c.key_id)}


def revoke_api_key(c: cmd.RevokeApiKey, uow: UnitOfWork) -> dict[str, Any]:
    _ensure_owner_resource(c.app_id, uow)
    uow.get(ApiKey, c.key_id).revoke(c.key_type, c.app_id, uow.ctx)
    return {"key_id": str(c.key_id)}


# --- knowledge ------------------------------------------------------------------------------


def create_dataset(c: cmd.CreateDataset, uow: UnitOfWork) -> dict[str, Any]:
    assert uow.ctx.actor_id is not None
    uow.get(Dataset, c.dataset_id).create(
        ev.DatasetCreated(**c.model_dump(exclude={"dataset_id"}), created_by=uow.ctx.actor_id),
        uow.ctx)
    return {"dataset_id": str(c.dataset_id)}


def update_dataset(c: cmd.UpdateDataset, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Dataset, c.dataset_id).update(c.model_dump(exclude={"dataset_id"}), uow.ctx)
    return {"dataset_id": str(c.dataset_id)}


def delete_dataset(c: cmd.DeleteDataset, uow: UnitOfWork) -> dict[str, Any]:
    # Its documents, segments, vectors and files go with it: the cleanup processor
    # reacts to DatasetDeleted.
    uow.get(Dataset, c.dataset_id).delete(uow.ctx)
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
        process_rule=c.process_rule or document.process_rule, updated_by=uow.ctx.actor_id,
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


def update_segment(c: cmd.UpdateSegment, uow: UnitOfWork) -> dict[str, Any]:
    document = visible_document(uow, c.dataset_id, c.document_id)
    segment = uow.get(Segment, c.segment_id)
    segment.ensure_live_in(document)
    data = segment.data
    content = c.content if c.content is not None else data["content"]
    changed = ev.SegmentUpdated(
        content=content,
        answer=c.answer if c.answer is not None else data["answer"],
        keywords=c.keywords if c.keywords is not None else data["keywords"],
        enabled=c.enabled if c.enabled is not None else data["enabled"],
        word_count=c.word_count if c.word_count is not None else len(content),
        tokens=c.tokens if c.tokens is not None else 0,
        index_node_hash=content_hash(content),
        child_chunks=data["child_chunks"],
        updated_by=uow.ctx.actor_id,
    )
    unchanged = all(getattr(changed, k) == data[k]
                    for k in ("content", "answer", "keywords", "enabled"))
    if not unchanged:
        segment.update(changed, uow.ctx)
    return {"segment_id": str(c.segment_id)}


def delete_segment(c: cmd.DeleteSegment, uow: UnitOfWork) -> dict[str, Any]:
    document = visible_document(uow, c.dataset_id, c.document_id)
    segment = uow.get(Segment, c.segment_id)
    segment.ensure_live_in(document)
    segment.delete(uow.ctx)
    return {"segment_id": str(c.segment_id)}


HANDLERS: dict[str, tuple[type[cmd.CommandPayload], Handler]] = {
    cmd.SetupPlatform.command_type: (cmd.SetupPlatform, setup_platform),
    cmd.CreateApp.command_type: (cmd.CreateApp, create_app),
    cmd.UpdateApp.command_type: (cmd.UpdateApp, update_app),
    cmd.DeleteApp.command_type: (cmd.DeleteApp, delete_app),
    cmd.CreateApiKey.command_type: (cmd.CreateApiKey, create_api_key),
    cmd.RevokeApiKey.command_type: (cmd.RevokeApiKey, revoke_api_key),
    cmd.CreateDataset.command_type: (cmd.CreateDataset, create_dataset),
    cmd.UpdateDataset.command_type: (cmd.UpdateDataset, update_dataset),
    cmd.DeleteDataset.command_type: (cmd.DeleteDataset, delete_dataset),
    cmd.CreateDocument.command_type: (cmd.CreateDocument, create_document),
    cmd.ReplaceDocumentSource.command_type: (cmd.ReplaceDocumentSource, replace_document_source),
    cmd.ControlDocumentIndexing.command_type: (cmd.ControlDocumentIndexing,
                                               control_document_indexing),
    cmd.UpdateDocumentStatus.command_type: (cmd.UpdateDocumentStatus, update_document_status),
    cmd.RenameDocument.command_type: (cmd.RenameDocument, rename_document),
    cmd.DeleteDocument.command_type: (cmd.DeleteDocument, delete_document),
    cmd.CreateSegments.command_type: (cmd.CreateSegments, create_segments),
    cmd.UpdateSegment.command_type: (cmd.UpdateSegment, update_segment),
    cmd.DeleteSegment.command_type: (cmd.DeleteSegment, delete_segment),
    **KNOWLEDGE_META_HANDLERS,  # metadata fields / values, child chunks
    **TAG_HANDLERS,
}
