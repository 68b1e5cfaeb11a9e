"""Command handlers of the conversation context: app configuration, questions, renames,
deletions and feedback. Answers are recorded by the chat processor, not by commands."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.conversation.aggregates import AnnotationSet, AppConfig, Conversation, UploadFile
from commands.platform.aggregates import App
from commands.registry import command_handlers
from commands.unit_of_work import UnitOfWork
from schemas.conversation import commands as cmd
from schemas.conversation import events as ev
from schemas.conversation.naming import (
    annotation_set_id_for,
    app_config_id_for,
    end_user_id_for,
)
from schemas.errors import UploadFileNotFound


def configure_app_model(c: cmd.ConfigureAppModel, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).ensure_visible_to(uow.ctx.tenant_id)
    uow.get(AppConfig, app_config_id_for(c.app_id)).configure_model(c.app_id, c.config, uow.ctx)
    return {"app_id": str(c.app_id)}


def configure_app_site(c: cmd.ConfigureAppSite, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).ensure_visible_to(uow.ctx.tenant_id)
    uow.get(AppConfig, app_config_id_for(c.app_id)).configure_site(c.app_id, c.changes, uow.ctx)
    return {"app_id": str(c.app_id)}


def send_message(c: cmd.SendMessage, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).ensure_visible_to(uow.ctx.tenant_id)
    end_user_id = end_user_id_for(c.app_id, c.user)
    conversation = uow.get(Conversation, c.conversation_id)
    if c.new_conversation:
        conversation.start(ev.ConversationStarted(
            app_id=c.app_id, end_user_id=end_user_id, user=c.user, mode=c.mode,
            name=_first_name(c.query), inputs=c.inputs), uow.ctx)
    conversation.ask(ev.MessageCreated(
        message_id=c.message_id, task_id=c.task_id, app_id=c.app_id, end_user_id=end_user_id,
        mode=c.mode, query=c.query, inputs=c.inputs, config=c.config, files=c.files), uow.ctx)
    return {"conversation_id": str(c.conversation_id), "message_id": str(c.message_id),
            "task_id": str(c.task_id)}


def record_file_upload(c: cmd.RecordFileUpload, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).ensure_visible_to(uow.ctx.tenant_id)
    uow.get(UploadFile, c.file_id).record_upload(ev.FileUploaded(
        app_id=c.app_id, end_user_id=end_user_id_for(c.app_id, c.user), name=c.name,
        size=c.size, extension=c.extension, mime_type=c.mime_type, key=c.key), uow.ctx)
    return {"file_id": str(c.file_id)}


def delete_file_record(c: cmd.DeleteFileRecord, uow: UnitOfWork) -> dict[str, Any]:
    upload = uow.get(UploadFile, c.file_id)
    if not upload.exists or upload.deleted or upload.tenant_id != uow.ctx.tenant_id:
        raise UploadFileNotFound()
    upload.delete(uow.ctx)
    return {"file_id": str(c.file_id)}


def _first_name(query: str) -> str:
    # Until it is renamed (or named by the model), a conversation is called by its question.
    name = " ".join(query.split())
    return name if len(name) <= 50 else name[:47] + "..."


def _visible(c: cmd.RenameConversation | cmd.DeleteConversation | cmd.GiveMessageFeedback,
             uow: UnitOfWork) -> Conversation:
    conversation = uow.get(Conversation, c.conversation_id)
    conversation.ensure_visible_to(c.app_id, end_user_id_for(c.app_id, c.user))
    return conversation


def rename_conversation(c: cmd.RenameConversation, uow: UnitOfWork) -> dict[str, Any]:
    _visible(c, uow).rename(c.name, uow.ctx)
    return {"conversation_id": str(c.conversation_id)}


def delete_conversation(c: cmd.DeleteConversation, uow: UnitOfWork) -> dict[str, Any]:
    _visible(c, uow).delete(uow.ctx)
    return {"conversation_id": str(c.conversation_id)}


def give_message_feedback(c: cmd.GiveMessageFeedback, uow: UnitOfWork) -> dict[str, Any]:
    _visible(c, uow).give_feedback(c.message_id, c.rating, c.content, uow.ctx)
    return {"message_id": str(c.message_id)}


def _annotations(app_id: UUID, uow: UnitOfWork) -> AnnotationSet:
    uow.get(App, app_id).ensure_visible_to(uow.ctx.tenant_id)
    return uow.get(AnnotationSet, annotation_set_id_for(app_id))


def create_annotation(c: cmd.CreateAnnotation, uow: UnitOfWork) -> dict[str, Any]:
    _annotations(c.app_id, uow).create(c.app_id, c.annotation_id, c.question, c.answer,
                                       uow.ctx)
    return {"annotation_id": str(c.annotation_id)}


def update_annotation(c: cmd.UpdateAnnotation, uow: UnitOfWork) -> dict[str, Any]:
    _annotations(c.app_id, uow).update(c.app_id, c.annotation_id, c.question, c.answer,
                                       uow.ctx)
    return {"annotation_id": str(c.annotation_id)}


def delete_annotation(c: cmd.DeleteAnnotation, uow: UnitOfWork) -> dict[str, Any]:
    _annotations(c.app_id, uow).delete(c.app_id, c.annotation_id, uow.ctx)
    return {"annotation_id": str(c.annotation_id)}


def configure_annotation_reply(c: cmd.ConfigureAnnotationReply,
                               uow: UnitOfWork) -> dict[str, Any]:
    _annotations(c.app_id, uow).request_reply(ev.AnnotationReplyRequested(
        app_id=c.app_id, job_id=c.job_id, action=c.action, score_threshold=c.score_threshold,
        embedding_provider_name=c.embedding_provider_name,
        embedding_model_name=c.embedding_model_name), uow.ctx)
    return {"job_id": str(c.job_id)}


def expire_messages(c: cmd.ExpireMessages, uow: UnitOfWork) -> dict[str, Any]:
    expired = uow.get(Conversation, c.conversation_id).expire(c.message_ids, uow.ctx)
    return {"expired": [str(m) for m in expired]}


HANDLERS = command_handlers(
    configure_app_model, configure_app_site, send_message, rename_conversation,
    delete_conversation, give_message_feedback, record_file_upload, create_annotation,
    update_annotation, delete_annotation, configure_annotation_reply, delete_file_record,
    expire_messages,
)
