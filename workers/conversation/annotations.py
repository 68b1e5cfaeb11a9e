"""Annotation reply (Dify's annotation jobs and its reply feature): the app's annotated
questions embedded into a vector collection of their own, and the lookup the chat
processor makes before calling the model.

The annotation worker runs on the `conversation.annotations` work topic, which carries one
app's annotation events in order: an enable/disable request is a job (started, then ended
completed or error); a created, updated or deleted annotation brings its vector in step
while reply is on. An enable job builds a collection of its own beside the one in force and
switches to it only when complete: a failed job leaves reply working as it was, and the
collection its setting names always exists. Each reads the app's AnnotationSet as it is
now, so a redelivery or an event that a later job's snapshot already covered converges on
the same index.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.embeddings.base import EmbeddingError
from adapters.embeddings.models import EmbeddingModel, EmbeddingModels, UnknownEmbeddingModel
from adapters.vector.base import VectorDocument, VectorStore
from commands.aggregate import Context
from commands.conversation.aggregates import AnnotationSet
from commands.unit_of_work import UnitOfWork
from events.envelope import Envelope
from events.store import ConcurrencyConflict, EventStore
from projections.conversation import queries
from projections.read_cache import NoticedCache, read_through
from schemas.conversation import events as ev
from schemas.conversation.naming import annotation_collection, annotation_set_id_for
from schemas.errors import EddyError
from workers.knowledge.indexing import caused_by

log = logging.getLogger(__name__)
MAX_RECORD_CONFLICTS = 20
EMBED_BATCH = 64


@dataclass
class AnnotationDeps:
    store: EventStore
    engine: AsyncEngine
    vectors: VectorStore
    embedding_models: EmbeddingModels
    # app -> its reply setting, {} while reply is off (the chat processor reads it per message)
    reply_settings: NoticedCache[UUID, dict[str, Any]] | None = None


async def load_set(store: EventStore, ctx: Context, app_id: UUID
                   ) -> tuple[UnitOfWork, AnnotationSet]:
    uow = UnitOfWork(store, ctx)
    return uow, await asyncio.to_thread(uow.get, AnnotationSet, annotation_set_id_for(app_id))


async def change_set(store: EventStore, ctx: Context, app_id: UUID,
                     decide: Callable[[AnnotationSet], bool]) -> tuple[AnnotationSet, bool]:
    """Decide on the app's current AnnotationSet and commit, again on a conflict (edits and
    hits write it meanwhile). `decide` says whether it recorded anything."""
    for _ in range(MAX_RECORD_CONFLICTS):
        uow, annotations = await load_set(store, ctx, app_id)
        if not decide(annotations):
            return annotations, False
        try:
            await asyncio.to_thread(uow.commit)
            return annotations, True
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"annotations of app {app_id} kept changing")


def _document(app_id: UUID, annotation_id: UUID, question: str,
              vector: list[float]) -> VectorDocument:
    return VectorDocument(id=str(annotation_id), text=question, vector=vector,
                          metadata={"app_id": str(app_id), "annotation_id": str(annotation_id)})


async def reply_requested(deps: AnnotationDeps,
                          event: Envelope[ev.AnnotationReplyRequested]) -> None:
    p, ctx = event.payload, caused_by(event)
    annotations, started = await change_set(deps.store, ctx, p.app_id,
                                            lambda s: s.start_job(p.job_id, ctx))
    if started:
        error = None
        if p.action == "enable":
            try:
                await _build(deps, event, annotations)
            except (EddyError, UnknownEmbeddingModel, EmbeddingError) as failure:
                error = getattr(failure, "message", None) or str(failure)
                log.warning("annotation reply job failed", extra={
                    "job_id": str(p.job_id), "app_id": str(p.app_id), "error": error[:300]})
        annotations, _ = await change_set(deps.store, ctx, p.app_id,
                                          lambda s: s.end_job(p.job_id, error, ctx))
    # After the switch (also on a redelivery, in case the first delivery stopped here):
    # what the setting no longer names goes, a failed job's half-built collection with it.
    for collection in sorted(annotations.replaced_collections(p.app_id)):
        await deps.vectors.delete(collection)


async def _build(deps: AnnotationDeps, event: Envelope[ev.AnnotationReplyRequested],
                 annotations: AnnotationSet) -> None:
    """The job's own collection, from the annotations as the job started; a redelivered
    job starts it afresh."""
    p = event.payload
    model = await deps.embedding_models.resolve(
        event.tenant_id,  # type: ignore[arg-type]
        p.embedding_provider_name, p.embedding_model_name)
    await _fill(deps, annotation_collection(p.app_id, p.job_id), model, p.app_id, annotations)


async def _fill(deps: AnnotationDeps, collection: str, model: EmbeddingModel, app_id: UUID,
                annotations: AnnotationSet) -> None:
    """The collection made anew (dropped first) with every annotation's question."""
    await deps.vectors.delete(collection)
    await deps.vectors.create(collection, model.embeddings.dimensions)
    items = list(annotations.annotations.items())
    for start in range(0, len(items), EMBED_BATCH):
        batch = items[start:start + EMBED_BATCH]
        vectors = await model.embeddings.embed_documents([q for _, (q, _) in batch])
        await deps.vectors.add_texts(collection, [
            _document(app_id, annotation_id, question, vector)
            for (annotation_id, (question, _)), vector in zip(batch, vectors, strict=True)])


async def rewrite_annotation_vectors(deps: AnnotationDeps, app_id: UUID) -> int | None:
    """`eddy vdb-migrate`: the collection the app's annotation reply searches, made anew in
    the configured vector store from its annotations as they are now; their number (None:
    reply is off, nothing to migrate)."""
    cause = uuid4()
    _, annotations = await load_set(deps.store, Context(None, None, cause, cause), app_id)
    reply = annotations.reply
    if reply is None:
        return None
    model = await deps.embedding_models.resolve(
        annotations.tenant_id,  # type: ignore[arg-type]
        reply.embedding_provider_name, reply.embedding_model_name)
    await _fill(deps, reply.collection, model, app_id, annotations)
    return len(annotations.annotations)


async def annotation_changed(deps: AnnotationDeps,
                             event: Envelope[ev.AnnotationCreated | ev.AnnotationUpdated
                                             | ev.AnnotationDeleted]) -> None:
    """While reply is on, the annotation's vector follows its current question."""
    p = event.payload
    _, annotations = await load_set(deps.store, caused_by(event), p.app_id)
    reply = annotations.reply
    if reply is None:
        return
    collection = reply.collection
    current = annotations.annotations.get(p.annotation_id)
    if current is None:
        await deps.vectors.delete_by_ids(collection, [str(p.annotation_id)])
        return
    model = await deps.embedding_models.resolve(
        event.tenant_id, reply.embedding_provider_name,  # type: ignore[arg-type]
        reply.embedding_model_name)
    vector = await model.embeddings.embed_query(current[0])
    await deps.vectors.add_texts(collection, [_document(p.app_id, p.annotation_id,
                                                        current[0], vector)])


async def find_reply(deps: AnnotationDeps, event: Envelope[ev.MessageCreated]
                     ) -> tuple[ev.AnnotationHit, str] | None:
    """Dify's annotation reply: the annotated question nearest to the message's, if at least
    as similar as the app's threshold, answers it: the hit to record and its answer. None
    sends the question to the model."""
    p = event.payload

    async def load() -> tuple[dict[str, Any], tuple[UUID]]:
        # Reply off is kept too ({}): a job's end, which turns it on, is the set's notice.
        return (await queries.annotation_reply_setting(deps.engine, p.app_id) or {},
                (annotation_set_id_for(p.app_id),))

    setting = await read_through(deps.reply_settings, p.app_id, load)
    if not setting:
        return None
    try:
        model = await deps.embedding_models.resolve(
            event.tenant_id,  # type: ignore[arg-type]
            setting["embedding_provider_name"], setting["embedding_model_name"])
        hits = await deps.vectors.search_by_vector(
            setting["collection"], await model.embeddings.embed_query(p.query),
            top_k=1, score_threshold=setting["score_threshold"])
    except (EddyError, UnknownEmbeddingModel, EmbeddingError) as failure:
        # As in Dify, a failed lookup is no reason to leave the question unanswered.
        log.warning("annotation reply lookup failed", extra={
            "message_id": str(p.message_id), "error": str(failure)[:300]})
        return None
    if not hits:
        return None
    annotation = await queries.annotation(deps.engine, p.app_id, UUID(hits[0].id))
    if annotation is None:
        return None  # deleted; its vector is on its way out
    return ev.AnnotationHit(app_id=p.app_id, annotation_id=annotation["id"],
                            message_id=p.message_id, question=p.query,
                            score=hits[0].score), annotation["answer"]
