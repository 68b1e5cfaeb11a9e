"""The conversation context's stream processors: the chat processor (run more members of its
group to answer more messages at once), the annotation worker (annotation reply jobs and
index) and the app-deletion cleanup. Their work topics, routes and roles are declared in
`contexts/conversation.py`."""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.bus.base import Message
from adapters.embeddings.models import EmbeddingModels
from adapters.kv.base import KeyValueStore
from adapters.storage.base import Storage
from adapters.vector.base import VectorStore
from config import Settings
from events.listener import Notifications
from events.registry import EventTypes
from events.store import EventStore
from projections.knowledge.retrieval import Retriever
from projections.platform.models import model_resolver
from projections.read_cache import following
from projections.versions import ReadModels
from schemas.conversation import events as ev
from schemas.platform import events as platform
from workers.conversation import cleanup
from workers.conversation.annotations import AnnotationDeps, annotation_changed, reply_requested
from workers.conversation.chat import (
    STOP_CHECK_SECONDS,
    ChatDeps,
    answer_message,
    fail_message,
)
from workers.conversation.cleanup import CleanupDeps
from workers.conversation.task_stream import StopWatch
from workers.runtime import Processor, by_type, decoding


def chat_processor(topic: str, *, settings: Settings, event_types: EventTypes,
                   store: EventStore, engine: AsyncEngine, read_models: ReadModels,
                   kv: KeyValueStore, storage: Storage,
                   embedding_models: EmbeddingModels, vectors: VectorStore,
                   keywords: VectorStore, notifications: Notifications | None) -> Processor:
    # What every message reads before calling the model, kept while no projection notice
    # names what it was read from (nothing is kept without a listener to hear them).
    models, reply_settings = (None, None) if notifications is None else (
        following(notifications), following(notifications))
    deps = ChatDeps(store=store, kv=kv, engine=engine, storage=storage,
                    retriever=Retriever(engine, embedding_models, vectors, keywords,
                                        settings.SECRET_KEY),
                    resolve=model_resolver(lambda: read_models.engine, settings.SECRET_KEY, "llm",
                                           models),
                    stream_ttl=settings.TASK_STREAM_TTL_SECONDS,
                    stops=StopWatch(kv, STOP_CHECK_SECONDS),
                    annotations=AnnotationDeps(store=store, engine=engine, vectors=vectors,
                                               embedding_models=embedding_models,
                                               reply_settings=reply_settings))

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        await fail_message(deps, event_types.envelope_from_json(message.value), exc)

    return Processor(group=topic, topics=[topic], on_dead_letter=on_dead_letter,
                     overlap=settings.CHAT_CONCURRENCY,
                     # LLM calls cost money and answer users: a replay never repeats them
                     # unless it allows side effects
                     side_effects=True,
                     handle=decoding(event_types, by_type({
                         ev.MessageCreated: partial(answer_message, deps)})))


def annotation_processor(topic: str, *, event_types: EventTypes, store: EventStore,
                         engine: AsyncEngine, vectors: VectorStore,
                         embedding_models: EmbeddingModels) -> Processor:
    deps = AnnotationDeps(store=store, engine=engine, vectors=vectors,
                          embedding_models=embedding_models)
    changed = partial(annotation_changed, deps)
    return Processor(group=topic, topics=[topic],
                     handle=decoding(event_types, by_type({
                         ev.AnnotationReplyRequested: partial(reply_requested, deps),
                         ev.AnnotationCreated: changed, ev.AnnotationUpdated: changed,
                         ev.AnnotationDeleted: changed})))


def cleanup_processor(topic: str, *, event_types: EventTypes, store: EventStore,
                      storage: Storage, vectors: VectorStore) -> Processor:
    deps = CleanupDeps(store=store, storage=storage, vectors=vectors)
    return Processor(group=topic, topics=[topic], handle=decoding(event_types, by_type({
        platform.AppDeleted: partial(cleanup.app_deleted, deps)})))
