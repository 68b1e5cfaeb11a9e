"""Aggregate decisions, without infrastructure."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from commands.aggregate import Context
from commands.conversation.aggregates import AnnotationSet
from commands.platform.aggregates import App, Setup
from schemas.conversation.events import AnnotationReplyRequested
from schemas.conversation.naming import annotation_collection
from schemas.errors import AlreadySetup, AnnotationNotFound, AppNotFound
from schemas.platform.events import AppCreated


def _ctx(tenant: object = None) -> Context:
    cid = uuid4()
    return Context(tenant_id=tenant or uuid4(), actor_id=uuid4(), correlation_id=cid,  # type: ignore[arg-type]
                   causation_id=cid)


def test_setup_happens_once() -> None:
    setup = Setup(uuid4())
    setup.complete(uuid4(), uuid4(), _ctx())
    replayed = Setup.replay(setup.id, setup.pending)
    with pytest.raises(AlreadySetup):
        replayed.complete(uuid4(), uuid4(), _ctx())


def test_app_is_invisible_to_other_workspaces_and_after_delete() -> None:
    ctx = _ctx()
    app = App(uuid4())
    app.create(AppCreated(name="a", mode="chat", created_by=uuid4()), ctx)
    with pytest.raises(AppNotFound):
        app.update({"name": "b"}, _ctx())  # another tenant
    app.delete(ctx)
    with pytest.raises(AppNotFound):
        app.ensure_visible_to(ctx.tenant_id)
    assert [e.aggregate_version for e in app.pending] == [1, 2]


def test_update_without_change_records_nothing() -> None:
    ctx = _ctx()
    app = App(uuid4())
    app.create(AppCreated(name="a", mode="chat", created_by=uuid4()), ctx)
    app.update({"name": "a", "description": None}, ctx)
    assert len(app.pending) == 1


def _reply_request(app_id: UUID, action: str, threshold: float = 0.9
                   ) -> AnnotationReplyRequested:
    return AnnotationReplyRequested(
        app_id=app_id, job_id=uuid4(), action=action, score_threshold=threshold,
        embedding_provider_name="openai_api_compatible", embedding_model_name="bge-m3")


def test_annotation_reply_jobs_run_once_and_set_the_reply() -> None:
    ctx, app_id = _ctx(), uuid4()
    annotations = AnnotationSet(uuid4())
    annotation_id = uuid4()
    annotations.create(app_id, annotation_id, "Hours?", "Nine to five.", ctx)
    enable = _reply_request(app_id, "enable")
    annotations.request_reply(enable, ctx)
    annotations.request_reply(enable, ctx)  # the same request again: one job
    assert annotations.start_job(enable.job_id, ctx)
    assert annotations.reply is None  # on only once the job completed
    assert annotations.end_job(enable.job_id, None, ctx)
    assert annotations.reply is not None and annotations.reply.score_threshold == 0.9
    # in force: the collection the job built beside the one before (of the old scheme)
    built = annotation_collection(app_id, enable.job_id)
    assert annotations.reply.collection == built
    assert annotations.replaced_collections(app_id) == {annotation_collection(app_id)}
    # a redelivered job neither starts nor ends again
    assert not annotations.start_job(enable.job_id, ctx)
    assert not annotations.end_job(enable.job_id, "late failure", ctx)

    failed = _reply_request(app_id, "enable", threshold=0.5)
    annotations.request_reply(failed, ctx)
    assert annotations.end_job(failed.job_id, "no such model", ctx)
    assert annotations.reply.score_threshold == 0.9  # a failed job changes nothing
    assert annotations.reply.collection == built  # and its own collection is to go
    assert annotations.replaced_collections(app_id) == {
        annotation_collection(app_id), annotation_collection(app_id, failed.job_id)}

    disable = _reply_request(app_id, "disable")
    annotations.request_reply(disable, ctx)
    annotations.end_job(disable.job_id, None, ctx)
    assert annotations.reply is None
    assert annotations.replaced_collections(app_id) == annotations.collections(app_id)
    replayed = AnnotationSet.replay(annotations.id, annotations.pending)
    assert replayed.reply is None and replayed.annotations == {
        annotation_id: ("Hours?", "Nine to five.")}
    assert [e.type for e in annotations.pending].count("AnnotationReplyJobEnded") == 3

    replayed.delete_all(app_id, ctx)
    assert replayed.annotations == {}
    with pytest.raises(AnnotationNotFound):
        replayed.update(app_id, annotation_id, "Hours?", "Ten.", ctx)
