"""The conversation context's cleanup (Dify's app-deletion task): a deleted app's
conversations (with their messages) and uploaded files are deleted, each as an event of its
own aggregate, and the files' bytes leave the storage. Idempotent: a redelivery finds them
deleted and records nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.base import Storage
from commands.conversation.aggregates import Conversation, UploadFile
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from events.store import EventStore
from projections.conversation import queries
from schemas.platform import events as platform
from workers.knowledge.indexing import caused_by


@dataclass
class CleanupDeps:
    store: EventStore
    engine: AsyncEngine
    storage: Storage


async def app_deleted(deps: CleanupDeps, event: Envelope[platform.AppDeleted]) -> None:
    conversations, files = await queries.app_leftovers(deps.engine, event.aggregate_id)
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
