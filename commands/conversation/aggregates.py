"""Conversation aggregates: an app's configuration, and conversations with their messages.

A conversation holds its messages: their history is what the model is given as memory,
read from the event store (consistent, no read-model lag), and one conversation's
messages are decided in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from commands.aggregate import Aggregate, Context
from schemas.conversation import events as ev
from schemas.conversation.naming import annotation_collection
from schemas.errors import AnnotationNotFound, ConversationNotFound, MessageNotFound


class AppConfig(Aggregate):
    """One per app (id derived from the app's): its model config and web site settings."""

    config: dict[str, Any] | None = None
    site: dict[str, Any] | None = None

    def apply_AppModelConfigured(self, p: ev.AppModelConfigured) -> None:
        self.config = p.config

    def apply_AppSiteConfigured(self, p: ev.AppSiteConfigured) -> None:
        self.site = p.site

    def configure_model(self, app_id: UUID, config: dict[str, Any], ctx: Context) -> None:
        if config == self.config:
            return
        assert ctx.actor_id is not None
        self.record(ev.AppModelConfigured(app_id=app_id, config=config,
                                          updated_by=ctx.actor_id), ctx)

    def configure_site(self, app_id: UUID, changes: dict[str, Any], ctx: Context) -> None:
        site = {**(self.site or {}), **changes}
        if site == self.site or (self.site is None and not changes):
            return
        assert ctx.actor_id is not None
        self.record(ev.AppSiteConfigured(app_id=app_id, site=site, updated_by=ctx.actor_id), ctx)


class UploadFile(Aggregate):
    """A file an end user uploaded to an app, for its messages."""

    def apply_FileUploaded(self, p: ev.FileUploaded) -> None:
        self.app_id, self.key = p.app_id, p.key

    deleted = False

    def apply_FileDeleted(self, p: ev.FileDeleted) -> None:
        self.deleted = True

    def delete(self, ctx: Context) -> None:
        if self.exists and not self.deleted:
            self.record(ev.FileDeleted(), ctx)

    def record_upload(self, payload: ev.FileUploaded, ctx: Context) -> None:
        if self.exists:
            return  # the same upload decided again
        self.record(payload, ctx)


@dataclass(frozen=True)
class ReplySetting:
    score_threshold: float
    embedding_provider_name: str
    embedding_model_name: str
    collection: str  # the index the job that put it in force built


class AnnotationSet(Aggregate):
    """One per app (id derived from the app's): its annotations and whether annotation reply
    is on. One stream per app orders every change the reply index must follow (the worker
    reads them in that order), and an enable job embeds a consistent snapshot of it."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.annotations: dict[UUID, tuple[str, str]] = {}  # id -> (question, answer)
        self.jobs: dict[UUID, ev.AnnotationReplyRequested] = {}
        self.ended_jobs: set[UUID] = set()
        self.reply: ReplySetting | None = None  # None: annotation reply is off

    def apply_AnnotationCreated(self, p: ev.AnnotationCreated) -> None:
        self.annotations[p.annotation_id] = (p.question, p.answer)

    def apply_AnnotationUpdated(self, p: ev.AnnotationUpdated) -> None:
        self.annotations[p.annotation_id] = (p.question, p.answer)

    def apply_AnnotationDeleted(self, p: ev.AnnotationDeleted) -> None:
        del self.annotations[p.annotation_id]

    def apply_AnnotationReplyRequested(self, p: ev.AnnotationReplyRequested) -> None:
        self.jobs[p.job_id] = p

    def apply_AnnotationReplyJobStarted(self, p: ev.AnnotationReplyJobStarted) -> None:
        pass

    def apply_AnnotationReplyJobEnded(self, p: ev.AnnotationReplyJobEnded) -> None:
        self.ended_jobs.add(p.job_id)
        job = self.jobs[p.job_id]
        if p.status != "completed":
            return
        self.reply = ReplySetting(job.score_threshold, job.embedding_provider_name,
                                  job.embedding_model_name, p.collection
                                  ) if job.action == "enable" else None

    def collections(self, app_id: UUID) -> set[str]:
        """Every collection the app's enable jobs may have built (and the one of before)."""
        return {annotation_collection(app_id)} | {
            annotation_collection(app_id, job_id) for job_id, job in self.jobs.items()
            if job.action == "enable"}

    def replaced_collections(self, app_id: UUID) -> set[str]:
        """Those of ended jobs that are not in force: superseded, or a failed job's."""
        building = {annotation_collection(app_id, j) for j in self.jobs if j not in self.ended_jobs}
        in_force = {self.reply.collection} if self.reply else set()
        return self.collections(app_id) - building - in_force

    # --- decisions -------------------------------------------------------------------------

    def create(self, app_id: UUID, annotation_id: UUID, question: str, answer: str,
               ctx: Context) -> None:
        if annotation_id in self.annotations:
            return  # the same request decided again (ids are made by the gateway)
        self.record(ev.AnnotationCreated(app_id=app_id, annotation_id=annotation_id,
                                         question=question, answer=answer), ctx)

    def update(self, app_id: UUID, annotation_id: UUID, question: str, answer: str,
               ctx: Context) -> None:
        if annotation_id not in self.annotations:
            raise AnnotationNotFound()
        if self.annotations[annotation_id] != (question, answer):
            self.record(ev.AnnotationUpdated(app_id=app_id, annotation_id=annotation_id,
                                             question=question, answer=answer), ctx)

    def delete(self, app_id: UUID, annotation_id: UUID, ctx: Context) -> None:
        if annotation_id not in self.annotations:
            raise AnnotationNotFound()
        self.record(ev.AnnotationDeleted(app_id=app_id, annotation_id=annotation_id), ctx)

    def delete_all(self, app_id: UUID, ctx: Context) -> None:
        """The app was deleted: its annotations go with it."""
        for annotation_id in list(self.annotations):
            self.delete(app_id, annotation_id, ctx)

    def request_reply(self, payload: ev.AnnotationReplyRequested, ctx: Context) -> None:
        if payload.job_id not in self.jobs:
            self.record(payload, ctx)

    def start_job(self, job_id: UUID, ctx: Context) -> bool:
        """False when the job ended already (a redelivery)."""
        if job_id in self.ended_jobs:
            return False
        self.record(ev.AnnotationReplyJobStarted(app_id=self.jobs[job_id].app_id,
                                                 job_id=job_id), ctx)
        return True

    def end_job(self, job_id: UUID, error: str | None, ctx: Context) -> bool:
        """False when it had ended already (a redelivery). A completed enable job puts the
        collection it built in force."""
        if job_id in self.ended_jobs:
            return False
        job = self.jobs[job_id]
        enabled = error is None and job.action == "enable"
        self.record(ev.AnnotationReplyJobEnded(
            app_id=job.app_id, job_id=job_id, status="error" if error else "completed",
            error=error or "",
            collection=annotation_collection(job.app_id, job_id) if enabled else ""), ctx)
        return True


@dataclass
class MessageState:
    query: str
    status: str = "pending"  # pending | answered | stopped | failed
    answer: str = ""
    task_id: UUID | None = None
    # how it ended, for closing its stream again after a redelivery
    usage: dict[str, Any] = field(default_factory=dict)
    retriever_resources: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] = field(default_factory=dict)  # status, code, message


class Conversation(Aggregate):
    app_id: UUID | None = None
    end_user_id: UUID | None = None
    user = ""  # the Service API's `user` its end user is known by
    deleted = False

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.messages: dict[UUID, MessageState] = {}

    def apply_ConversationStarted(self, p: ev.ConversationStarted) -> None:
        self.app_id, self.end_user_id, self.name = p.app_id, p.end_user_id, p.name
        self.user = p.user

    def apply_MessageCreated(self, p: ev.MessageCreated) -> None:
        self.messages[p.message_id] = MessageState(query=p.query, task_id=p.task_id)

    def apply_MessageAnswered(self, p: ev.MessageAnswered) -> None:
        message = self._end(p.message_id, "answered", p.answer)
        message.usage, message.retriever_resources = p.usage, p.retriever_resources

    def apply_MessageStopped(self, p: ev.MessageStopped) -> None:
        self._end(p.message_id, "stopped", p.answer).usage = p.usage

    def apply_MessageFailed(self, p: ev.MessageFailed) -> None:
        self._end(p.message_id, "failed", "").error = {
            "status": p.status, "code": p.code, "message": p.error}

    def apply_ConversationRenamed(self, p: ev.ConversationRenamed) -> None:
        self.name = p.name

    def apply_ConversationDeleted(self, p: ev.ConversationDeleted) -> None:
        self.deleted = True

    def apply_MessagesExpired(self, p: ev.MessagesExpired) -> None:
        for message_id in p.message_ids:
            self.messages.pop(message_id, None)

    def apply_MessageFeedbackGiven(self, p: ev.MessageFeedbackGiven) -> None:
        pass

    def apply_AnnotationHit(self, p: ev.AnnotationHit) -> None:
        pass

    def _end(self, message_id: UUID, status: str, answer: str) -> MessageState:
        message = self.messages[message_id]
        message.status, message.answer = status, answer
        return message

    # --- decisions -------------------------------------------------------------------------

    def ensure_visible_to(self, app_id: UUID, end_user_id: UUID) -> None:
        """Another app's or end user's conversation is indistinguishable from a missing one."""
        if not self.exists or self.deleted or self.app_id != app_id \
                or self.end_user_id != end_user_id:
            raise ConversationNotFound()

    def start(self, payload: ev.ConversationStarted, ctx: Context) -> None:
        if self.exists:
            raise ConversationNotFound()  # ids are made by the gateway: a clash is a bug
        self.record(payload, ctx)

    def ask(self, payload: ev.MessageCreated, ctx: Context) -> None:
        self.ensure_visible_to(payload.app_id, payload.end_user_id)
        if payload.message_id in self.messages:
            return  # the same request decided again
        self.record(payload, ctx)

    def awaits_answer(self, message_id: UUID) -> bool:
        message = self.messages.get(message_id)
        return message is not None and message.status == "pending"

    def finish(self, payload: ev.MessageAnswered | ev.MessageStopped | ev.MessageFailed,
               ctx: Context, hit: ev.AnnotationHit | None = None) -> bool:
        """Record how a pending message ended (with the annotation hit that answered it);
        False when it had already ended (a worker redelivered, or a stop and an answer
        racing): the first end stands, and a hit counts once."""
        if not self.awaits_answer(payload.message_id):
            return False
        if hit is not None:
            self.record(hit, ctx)
        self.record(payload, ctx)
        return True

    def history(self, before: UUID) -> list[tuple[str, str]]:
        """Earlier turns (question, answer) that got an answer, oldest first."""
        turns = []
        for message_id, message in self.messages.items():
            if message_id == before:
                break
            if message.status in ("answered", "stopped") and message.answer:
                turns.append((message.query, message.answer))
        return turns

    def rename(self, name: str, ctx: Context) -> None:
        if name != self.name:
            self.record(ev.ConversationRenamed(name=name), ctx)

    def delete(self, ctx: Context) -> None:
        if not self.deleted:
            self.record(ev.ConversationDeleted(), ctx)

    def expire(self, message_ids: list[UUID], ctx: Context) -> list[UUID]:
        """Those of its messages that ended (a pending one is still being answered); none
        again once expired."""
        ended = [m for m in dict.fromkeys(message_ids)
                 if m in self.messages and self.messages[m].status != "pending"]
        if ended:
            self.record(ev.MessagesExpired(message_ids=ended), ctx)
        return ended

    def give_feedback(self, message_id: UUID, rating: str | None, content: str | None,
                      ctx: Context) -> None:
        if message_id not in self.messages:
            raise MessageNotFound()
        self.record(ev.MessageFeedbackGiven(message_id=message_id, rating=rating,
                                            content=content), ctx)
