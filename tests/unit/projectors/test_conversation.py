"""The conversation context's projectors: app configuration, conversations,
messages, annotations, files."""

from __future__ import annotations

from uuid import UUID, uuid4

from projections.conversation import queries as cq
from projections.conversation.tables import (
    annotation_hits,
    conversations,
    end_users,
    messages,
)
from schemas.conversation import events as cev
from schemas.conversation.naming import (
    annotation_set_id_for,
    app_config_id_for,
    end_user_id_for,
)
from tests.unit.projectors.harness import (
    World,
    exercises,
)

# --- conversation ------------------------------------------------------------------------------


@exercises(cev.AppModelConfigured, cev.AppSiteConfigured)
async def test_app_model_config_and_site(world: World) -> None:
    app_id = uuid4()
    config_id = app_config_id_for(app_id)
    await world.emit("AppConfig", config_id, cev.AppModelConfigured(
        app_id=app_id, config={"pre_prompt": "one"}, updated_by=world.actor))
    await world.emit("AppConfig", config_id, cev.AppModelConfigured(
        app_id=app_id, config={"pre_prompt": "two"}, updated_by=world.actor))
    assert await cq.app_model_config(world.engine, app_id) == {"pre_prompt": "two"}
    assert await cq.app_model_config(world.engine, uuid4()) is None
    assert await cq.app_site(world.engine, app_id) == {}
    await world.emit("AppConfig", config_id, cev.AppSiteConfigured(
        app_id=app_id, site={"title": "Guide"}, updated_by=world.actor))
    assert await cq.app_site(world.engine, app_id) == {"title": "Guide"}


async def conversation_with_message(w: World, app_id: UUID, user: str = "u1",
                                    query: str = "Hi?") -> tuple[UUID, UUID]:
    conversation_id, message_id = uuid4(), uuid4()
    end_user_id = end_user_id_for(app_id, user)
    await w.emit("Conversation", conversation_id, cev.ConversationStarted(
        app_id=app_id, end_user_id=end_user_id, user=user, mode="chat", name=query,
        inputs={"city": "Oslo"}))
    await w.emit("Conversation", conversation_id, cev.MessageCreated(
        message_id=message_id, task_id=uuid4(), app_id=app_id, end_user_id=end_user_id,
        mode="chat", query=query, inputs={"city": "Oslo"}, config={}))
    return conversation_id, message_id


@exercises(cev.ConversationStarted, cev.MessageCreated, cev.MessageAnswered,
           cev.MessageStopped, cev.MessageFailed)
async def test_conversation_and_its_messages(world: World) -> None:
    app_id = uuid4()
    conversation_id, first = await conversation_with_message(world, app_id)
    row = await world.one(messages, first)
    assert (row["status"], row["answer"], row["query"]) == ("pending", "", "Hi?")
    usage = {"total_tokens": 12, "latency": 0.5}
    resources = [{"position": 1, "document_name": "guide.txt"}]
    await world.emit("Conversation", conversation_id, cev.MessageAnswered(
        message_id=first, answer="Hello.", usage=usage, retriever_resources=resources))
    row = await world.one(messages, first)
    assert (row["status"], row["answer"], row["usage"], row["retriever_resources"],
            row["latency"]) == ("normal", "Hello.", usage, resources, 0.5)

    end_user_id = end_user_id_for(app_id, "u1")
    stopped, failed = uuid4(), uuid4()
    for message_id in (stopped, failed):
        await world.emit("Conversation", conversation_id, cev.MessageCreated(
            message_id=message_id, task_id=uuid4(), app_id=app_id, end_user_id=end_user_id,
            mode="chat", query="More?", inputs={}, config={}))
    await world.emit("Conversation", conversation_id, cev.MessageStopped(
        message_id=stopped, answer="Partial", usage=usage))
    await world.emit("Conversation", conversation_id, cev.MessageFailed(
        message_id=failed, code="completion_request_error", status=400, error="boom"))
    assert (await world.one(messages, stopped))["status"] == "stopped"
    assert [(r["status"], r["error"]) for r in [await world.one(messages, failed)]] == [
        ("error", "boom")]

    assert (await world.one(end_users, end_user_id))["session_id"] == "u1"
    page = await cq.conversation_messages(world.engine, conversation_id, first_id=None, limit=2)
    assert page is not None and [m["id"] for m in page.items] == [stopped, failed]
    assert page.total == 1  # older ones remain
    older = await cq.conversation_messages(world.engine, conversation_id, first_id=stopped,
                                           limit=2)
    assert older is not None and [m["id"] for m in older.items] == [first] and older.total == 0


@exercises(cev.AnnotationCreated, cev.AnnotationUpdated, cev.AnnotationDeleted,
           cev.AnnotationHit)
async def test_annotations_listed_with_keyword_and_hits(world: World) -> None:
    app_id, other_app = uuid4(), uuid4()
    set_id = annotation_set_id_for(app_id)
    ids = [uuid4() for _ in range(3)]
    for annotation_id, (question, answer) in zip(ids, [
            ("Opening hours?", "9 to 5."), ("Where is it?", "Main St 100%"),
            ("Parking?", "Free after 5.")], strict=True):
        await world.emit("AnnotationSet", set_id, cev.AnnotationCreated(
            app_id=app_id, annotation_id=annotation_id, question=question, answer=answer))
    await world.emit("AnnotationSet", annotation_set_id_for(other_app), cev.AnnotationCreated(
        app_id=other_app, annotation_id=uuid4(), question="Opening hours?", answer="Never."))
    rows, total = await cq.list_annotations(world.engine, app_id, "", page=1, limit=2)
    assert [r["id"] for r in rows] == [ids[2], ids[1]] and total == 3  # newest first
    rows, total = await cq.list_annotations(world.engine, app_id, "", page=2, limit=2)
    assert [r["id"] for r in rows] == [ids[0]] and total == 3
    # the keyword matches the question or the answer, case-insensitively; % is literal
    for keyword, expected in (("hours", [ids[0]]), ("after 5", [ids[2]]), ("100%", [ids[1]]),
                              ("%", [ids[1]]), ("nothing", [])):
        rows, total = await cq.list_annotations(world.engine, app_id, keyword, 1, 20)
        assert [r["id"] for r in rows] == expected and total == len(expected), keyword

    await world.emit("AnnotationSet", set_id, cev.AnnotationUpdated(
        app_id=app_id, annotation_id=ids[0], question="When open?", answer="9 to 6."))
    conversation_id, message_id = await conversation_with_message(world, app_id)
    for _ in range(2):
        await world.emit("Conversation", conversation_id, cev.AnnotationHit(
            app_id=app_id, annotation_id=ids[0], message_id=message_id, question="Hours?",
            score=0.97))
    row = await cq.annotation(world.engine, app_id, ids[0])
    assert row is not None and (row["question"], row["answer"], row["hit_count"]) == (
        "When open?", "9 to 6.", 2)
    assert await cq.annotation(world.engine, other_app, ids[0]) is None  # another app's
    await world.emit("AnnotationSet", set_id, cev.AnnotationDeleted(app_id=app_id,
                                                                    annotation_id=ids[0]))
    assert await cq.annotation(world.engine, app_id, ids[0]) is None
    assert (await cq.list_annotations(world.engine, app_id, "", 1, 20))[1] == 2
    # hits are other partitions' events: one applied after the deletion stays out, one
    # applied before its annotation's creation counts
    late, early = uuid4(), uuid4()
    for annotation_id in (ids[0], late):
        await world.emit("Conversation", conversation_id, cev.AnnotationHit(
            app_id=app_id, annotation_id=annotation_id, message_id=message_id,
            question="Hours?", score=0.97))
    await world.emit("AnnotationSet", set_id, cev.AnnotationCreated(
        app_id=app_id, annotation_id=late, question="Late?", answer="Yes."))
    row = await cq.annotation(world.engine, app_id, late)
    assert row is not None and row["hit_count"] == 1
    await world.emit("AnnotationSet", set_id, cev.AnnotationCreated(
        app_id=app_id, annotation_id=early, question="Early?", answer="No."))
    assert (await cq.annotation(world.engine, app_id, early))["hit_count"] == 0  # type: ignore[index]
    assert [r["annotation_id"] for r in await world.rows(annotation_hits)] == [late]


@exercises(cev.AnnotationReplyRequested, cev.AnnotationReplyJobStarted,
           cev.AnnotationReplyJobEnded)
async def test_annotation_reply_jobs_and_setting(world: World) -> None:
    app_id = uuid4()
    set_id = annotation_set_id_for(app_id)

    async def request(action: str, threshold: float = 0.8) -> UUID:
        job_id = uuid4()
        await world.emit("AnnotationSet", set_id, cev.AnnotationReplyRequested(
            app_id=app_id, job_id=job_id, action=action, score_threshold=threshold,
            embedding_provider_name="openai_api_compatible", embedding_model_name="bge-m3"))
        return job_id

    async def status(action: str, job_id: UUID) -> tuple[str, str] | None:
        job = await cq.annotation_reply_job(world.engine, app_id, action, job_id)
        return None if job is None else (job["status"], job["error"])

    enable = await request("enable")
    assert await status("enable", enable) == ("waiting", "")
    assert await status("disable", enable) is None  # asked under the other action
    await world.emit("AnnotationSet", set_id, cev.AnnotationReplyJobStarted(app_id=app_id,
                                                                            job_id=enable))
    assert await status("enable", enable) == ("processing", "")
    assert await cq.annotation_reply_setting(world.engine, app_id) is None  # not yet on
    await world.emit("AnnotationSet", set_id, cev.AnnotationReplyJobEnded(
        app_id=app_id, job_id=enable, status="completed", collection="annotations_built"))
    assert await status("enable", enable) == ("completed", "")
    setting = await cq.annotation_reply_setting(world.engine, app_id)
    assert setting is not None and (
        setting["score_threshold"], setting["embedding_model_name"], setting["collection"]
    ) == (0.8, "bge-m3", "annotations_built")

    failed = await request("enable", threshold=0.5)
    await world.emit("AnnotationSet", set_id, cev.AnnotationReplyJobEnded(
        app_id=app_id, job_id=failed, status="error", error="no such model"))
    assert await status("enable", failed) == ("error", "no such model")
    setting = await cq.annotation_reply_setting(world.engine, app_id)
    assert setting is not None and setting["score_threshold"] == 0.8  # unchanged

    disable = await request("disable")
    await world.emit("AnnotationSet", set_id, cev.AnnotationReplyJobEnded(
        app_id=app_id, job_id=disable, status="completed"))
    assert await cq.annotation_reply_setting(world.engine, app_id) is None


@exercises(cev.FileUploaded, cev.FileDeleted)
async def test_file_uploaded_and_deleted(world: World) -> None:
    app_id, file_id = uuid4(), uuid4()
    await world.emit("UploadFile", file_id, cev.FileUploaded(
        app_id=app_id, end_user_id=end_user_id_for(app_id, "ann"), name="cat.png", size=3,
        extension="png", mime_type="image/png", key="upload_files/x.png"))
    row = await cq.upload_file(world.engine, app_id, file_id)
    assert row is not None and (row["name"], row["size"], row["key"]) == (
        "cat.png", 3, "upload_files/x.png")
    assert await cq.upload_file(world.engine, uuid4(), file_id) is None  # another app's
    assert await cq.app_leftovers(world.engine, app_id) == ([], [file_id])
    await world.emit("UploadFile", file_id, cev.FileDeleted())
    assert await cq.upload_file(world.engine, app_id, file_id) is None


@exercises(cev.ConversationRenamed, cev.ConversationDeleted, cev.MessageFeedbackGiven)
async def test_renamed_feedback_and_deleted(world: World) -> None:
    app_id = uuid4()
    conversation_id, message_id = await conversation_with_message(world, app_id)
    other, _ = await conversation_with_message(world, app_id, query="Second")
    await world.emit("Conversation", conversation_id, cev.ConversationRenamed(name="Trip"))
    assert (await world.one(conversations, conversation_id))["name"] == "Trip"
    listed = await cq.list_conversations(world.engine, app_id, end_user_id_for(app_id, "u1"),
                                         last_id=None, limit=1, sort_by="-updated_at")
    assert listed is not None and [c["id"] for c in listed.items] == [conversation_id]
    assert listed.total == 1
    rest = await cq.list_conversations(world.engine, app_id, end_user_id_for(app_id, "u1"),
                                       last_id=conversation_id, limit=5, sort_by="-updated_at")
    assert rest is not None and [c["id"] for c in rest.items] == [other]

    await world.emit("Conversation", conversation_id, cev.MessageFeedbackGiven(
        message_id=message_id, rating="like", content="nice"))
    feedbacks = await cq.app_feedbacks(world.engine, app_id, page=1, limit=10)
    assert [(f["id"], f["feedback_rating"]) for f in feedbacks.items] == [(message_id, "like")]
    await world.emit("Conversation", conversation_id, cev.MessageFeedbackGiven(
        message_id=message_id, rating=None))
    assert (await cq.app_feedbacks(world.engine, app_id, page=1, limit=10)).total == 0

    await world.emit("Conversation", conversation_id, cev.ConversationDeleted())
    assert await world.row(conversations, conversation_id) is None
    assert await world.row(messages, message_id) is None
    assert await world.row(conversations, other) is not None


@exercises(cev.MessagesExpired)
async def test_expired_messages_leave_the_conversation(world: World) -> None:
    app_id = uuid4()
    conversation_id, old = await conversation_with_message(world, app_id)
    new = uuid4()
    await world.emit("Conversation", conversation_id, cev.MessageCreated(
        message_id=new, task_id=uuid4(), app_id=app_id, end_user_id=end_user_id_for(app_id, "u1"),
        mode="chat", query="Later?", inputs={}, config={}))
    await world.emit("Conversation", conversation_id, cev.MessagesExpired(message_ids=[old]))
    page = await cq.conversation_messages(world.engine, conversation_id, first_id=None, limit=20)
    assert page is not None and [m["id"] for m in page.items] == [new]
