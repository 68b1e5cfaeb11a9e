"""The conversation context's cleanup (Dify's app-deletion task): a deleted app's
conversations (with their messages), uploaded files and annotations are deleted, each as an
event of its own aggregate; the files' bytes leave the storage, the annotation reply index
its vector store. What belongs to the app comes from the event store, never from the read
model: one that lags (or whose projectors are down) would leave the conversations and
uploads made just before the deletion behind. Idempotent: a redelivery finds them deleted
and records nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from adapters.storage.base import Storage
from adapters.vector.base import VectorStore
from commands.conversation.aggregates import AnnotationSet, Conversation, UploadFile
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from events.store import EventStore
from schemas.conversation import events as ev
from schemas.conversation.naming import annotation_set_id_for
from schemas.platform import events as platform
from workers.knowledge.indexing import caused_by


@dataclass
class CleanupDeps:
    store: EventStore
    storage: Storage
    vectors: VectorStore


async def app_deleted(deps: CleanupDeps, event: Envelope[platform.AppDeleted]) -> None:
    owned = await asyncio.to_thread(
        deps.store.events_naming, [ev.ConversationStarted.__name__, ev.FileUploaded.__name__],
        "app_id", event.aggregate_id)
    conversations = [e.aggregate_id for e in owned if isinstance(e.payload, ev.ConversationStarted)]
    files = [e.aggregate_id for e in owned if isinstance(e.payload, ev.FileUploaded)]
    ctx = caused_by(event)
    for conversation_id in conversations:
        uow = UnitOfWork(deps.store, ctx)
        (await asyncio.to_thread(uow.get, Conversation, conversation_id)).delete(ctx)
        await asyncio.to_thread(uow.commit)
    for file_id in files:
        uow = UnitOfWork(deps.store, ctx)
        upload = await asyncio.to_thread(uow.get, UploadFile, file_id)
        if upload.exists and not upload.deleted:
            await deps.storage.delete(upload.key)
        upload.delete(ctx)
        await asyncio.to_thread(uow.commit)
    uow = UnitOfWork(deps.store, ctx)
    annotations = await asyncio.to_thread(uow.get, AnnotationSet,
                                          annotation_set_id_for(event.aggregate_id))
    annotations.delete_all(event.aggregate_id, ctx)
    await asyncio.to_thread(uow.commit)
    for collection in sorted(annotations.collections(event.aggregate_id)):
        await deps.vectors.delete(collection)
