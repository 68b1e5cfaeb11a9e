"""The conversation context's stream processors: the chat processor (a consumer group on the
`conversation.chat` work topic; run more members to answer more messages at once), the
annotation worker (annotation reply jobs and index) and the app-deletion cleanup."""

from __future__ import annotations

from functools import partial
from uuid import UUID

from adapters.bus.base import Message
from projections.knowledge.retrieval import Retriever
from projections.platform.models import resolve_model
from schemas.conversation import events as ev
from schemas.conversation.topics import ANNOTATIONS, CHAT, CLEANUP
from schemas.platform import events as platform
from workers.container import ProcessorFactory, WorkerContainer
from workers.conversation import cleanup
from workers.conversation.annotations import AnnotationDeps, annotation_changed, reply_requested
from workers.conversation.chat import ChatDeps, ChatModel, answer_message, fail_message
from workers.conversation.cleanup import CleanupDeps
from workers.runtime import Processor, by_type, decoding


def chat_processor(c: WorkerContainer) -> Processor:
    async def resolve(tenant_id: UUID, provider: str | None, model: str | None) -> ChatModel:
        return await resolve_model(c.engine, c.settings.SECRET_KEY, tenant_id, "llm",
                                   provider, model)

    deps = ChatDeps(store=c.store, kv=c.kv, engine=c.engine, storage=c.storage,
                    retriever=Retriever(c.engine, c.embedding_models, c.vectors, c.keywords,
                                        c.settings.SECRET_KEY),
                    resolve=resolve, stream_ttl=c.settings.TASK_STREAM_TTL_SECONDS,
                    annotations=annotation_deps(c))

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        await fail_message(deps, c.event_types.envelope_from_json(message.value), exc)

    return Processor(group=CHAT, topics=[CHAT], on_dead_letter=on_dead_letter,
                     overlap=c.settings.CHAT_CONCURRENCY,
                     # LLM calls cost money and answer users: a replay never repeats them
                     # unless it allows side effects
                     side_effects=True,
                     handle=decoding(c.event_types, by_type({
                         ev.MessageCreated: partial(answer_message, deps)})))


def annotation_deps(c: WorkerContainer) -> AnnotationDeps:
    return AnnotationDeps(store=c.store, engine=c.engine, vectors=c.vectors,
                          embedding_models=c.embedding_models)


def annotation_processor(c: WorkerContainer) -> Processor:
    deps = annotation_deps(c)
    changed = partial(annotation_changed, deps)
    return Processor(group=ANNOTATIONS, topics=[ANNOTATIONS],
                     handle=decoding(c.event_types, by_type({
                         ev.AnnotationReplyRequested: partial(reply_requested, deps),
                         ev.AnnotationCreated: changed, ev.AnnotationUpdated: changed,
                         ev.AnnotationDeleted: changed})))


def cleanup_processor(c: WorkerContainer) -> Processor:
    deps = CleanupDeps(store=c.store, engine=c.engine, storage=c.storage, vectors=c.vectors)
    return Processor(group=CLEANUP, topics=[CLEANUP], handle=decoding(c.event_types, by_type({
        platform.AppDeleted: partial(cleanup.app_deleted, deps)})))


# role name -> processor factory (`eddy worker --roles chat`)
PROCESSORS: dict[str, ProcessorFactory] = {"chat": chat_processor,
                                           "annotations": annotation_processor,
                                           "conversation-cleanup": cleanup_processor}
