"""The conversation context's command handlers: app configuration, messages,
conversations, files, annotations."""

from __future__ import annotations

from uuid import UUID, uuid4

from commands.aggregate import Context
from commands.conversation.aggregates import Conversation
from commands.unit_of_work import UnitOfWork
from schemas import errors
from schemas.conversation import commands as cc
from schemas.conversation import events as ce
from schemas.conversation.naming import (
    app_config_id_for,
    end_user_id_for,
)
from schemas.platform import commands as pc
from tests.unit.handlers.harness import (
    World,
    accepted,
    covers,
    rejected,
    unchanged,
)

# =========================================================================================
# conversation: app configuration
# =========================================================================================

CONFIG = {"model": {"provider": "openai", "name": "gpt-4o-mini", "mode": "chat",
                    "completion_params": {}}, "pre_prompt": "Be brief."}


@covers(cc.ConfigureAppModel)
def test_configure_app_model(world: World) -> None:
    app_id = world.app()
    ran = accepted(world.run(cc.ConfigureAppModel(app_id=app_id, config=CONFIG)),
                   app_id=str(app_id))
    assert ran.one(ce.AppModelConfigured) == ce.AppModelConfigured(
        app_id=app_id, config=CONFIG, updated_by=world.me.actor_id)
    assert ran.event(ce.AppModelConfigured).aggregate_id == app_config_id_for(app_id)
    unchanged(world.run(cc.ConfigureAppModel(app_id=app_id, config=CONFIG)))
    rejected(world.run(cc.ConfigureAppModel(app_id=app_id, config=CONFIG), as_=world.rival),
             errors.AppNotFound)
    rejected(world.run(cc.ConfigureAppModel(app_id=world.dataset(), config=CONFIG)),
             errors.AppNotFound)


@covers(cc.ConfigureAppSite)
def test_configure_app_site_merges_what_is_sent(world: World) -> None:
    app_id = world.app()
    first = accepted(world.run(cc.ConfigureAppSite(app_id=app_id, changes={"title": "Guide"})))
    assert first.one(ce.AppSiteConfigured).site == {"title": "Guide"}
    second = accepted(world.run(cc.ConfigureAppSite(app_id=app_id,
                                                    changes={"copyright": "2026"})))
    assert second.one(ce.AppSiteConfigured).site == {"title": "Guide", "copyright": "2026"}
    unchanged(world.run(cc.ConfigureAppSite(app_id=app_id, changes={"title": "Guide"})))
    world.given(pc.DeleteApp(app_id=app_id))
    rejected(world.run(cc.ConfigureAppSite(app_id=app_id, changes={"title": "x"})),
             errors.AppNotFound)


# =========================================================================================
# conversation: messages, renames, deletions, feedback
# =========================================================================================


def ask(app_id: UUID, conversation_id: UUID, query: str = "Hi?", *, user: str = "u1",
        new: bool = True) -> cc.SendMessage:
    return cc.SendMessage(conversation_id=conversation_id, message_id=uuid4(), task_id=uuid4(),
                          app_id=app_id, mode="chat", user=user, query=query, inputs={"a": "b"},
                          config=CONFIG, new_conversation=new)


@covers(cc.SendMessage)
def test_send_message_starts_and_continues_a_conversation(world: World) -> None:
    app_id, conversation_id = world.app(), uuid4()
    first = ask(app_id, conversation_id, "What time is it in " + "a very long place " * 5)
    ran = accepted(world.run(first), conversation_id=str(conversation_id),
                   message_id=str(first.message_id), task_id=str(first.task_id))
    assert ran.types == ["ConversationStarted", "MessageCreated"]
    started = ran.one(ce.ConversationStarted)
    assert started.end_user_id == end_user_id_for(app_id, "u1") and started.user == "u1"
    assert len(started.name) == 50 and started.name.endswith("...")
    created = ran.one(ce.MessageCreated)
    assert (created.message_id, created.task_id, created.config, created.inputs) == (
        first.message_id, first.task_id, CONFIG, {"a": "b"})

    follow = accepted(world.run(ask(app_id, conversation_id, "And now?", new=False)))
    assert follow.types == ["MessageCreated"]
    # another end user, another app, a missing conversation: all "Conversation Not Exists."
    rejected(world.run(ask(app_id, conversation_id, user="u2", new=False)),
             errors.ConversationNotFound)
    rejected(world.run(ask(world.app("Other"), conversation_id, new=False)),
             errors.ConversationNotFound)
    rejected(world.run(ask(app_id, uuid4(), new=False)), errors.ConversationNotFound)
    rejected(world.run(ask(app_id, uuid4()), as_=world.rival), errors.AppNotFound)


@covers(cc.RenameConversation, cc.DeleteConversation)
def test_rename_and_delete_conversation(world: World) -> None:
    app_id, conversation_id = world.app(), uuid4()
    world.given(ask(app_id, conversation_id))
    renamed = accepted(world.run(cc.RenameConversation(
        conversation_id=conversation_id, app_id=app_id, user="u1", name="Trip")))
    assert renamed.one(ce.ConversationRenamed).name == "Trip"
    rejected(world.run(cc.RenameConversation(conversation_id=conversation_id, app_id=app_id,
                                             user="u2", name="Mine")),
             errors.ConversationNotFound)
    rejected(world.run(cc.DeleteConversation(conversation_id=conversation_id, app_id=app_id,
                                             user="u2")), errors.ConversationNotFound)
    deleted = accepted(world.run(cc.DeleteConversation(conversation_id=conversation_id,
                                                       app_id=app_id, user="u1")))
    assert deleted.types == ["ConversationDeleted"]
    rejected(world.run(ask(app_id, conversation_id, new=False)), errors.ConversationNotFound)
    rejected(world.run(cc.DeleteConversation(conversation_id=conversation_id, app_id=app_id,
                                             user="u1")), errors.ConversationNotFound)


@covers(cc.GiveMessageFeedback)
def test_message_feedback(world: World) -> None:
    app_id, conversation_id = world.app(), uuid4()
    question = ask(app_id, conversation_id)
    world.given(question)

    def feedback(rating: str | None, user: str = "u1",
                 message_id: UUID | None = None) -> cc.GiveMessageFeedback:
        return cc.GiveMessageFeedback(conversation_id=conversation_id, app_id=app_id, user=user,
                                      message_id=message_id or question.message_id,
                                      rating=rating, content="great")  # type: ignore[arg-type]

    liked = accepted(world.run(feedback("like")))
    assert liked.one(ce.MessageFeedbackGiven) == ce.MessageFeedbackGiven(
        message_id=question.message_id, rating="like", content="great")
    assert accepted(world.run(feedback(None))).one(ce.MessageFeedbackGiven).rating is None
    rejected(world.run(feedback("like", message_id=uuid4())), errors.MessageNotFound)
    rejected(world.run(feedback("like", user="u2")), errors.ConversationNotFound)


@covers(cc.RecordFileUpload)
def test_record_file_upload(world: World) -> None:
    app_id, file_id = world.app(), uuid4()
    upload = cc.RecordFileUpload(file_id=file_id, app_id=app_id, user="ann", name="cat.png",
                                 size=3, extension="png", mime_type="image/png", key="k")
    ran = accepted(world.run(upload), file_id=str(file_id))
    assert ran.one(ce.FileUploaded) == ce.FileUploaded(
        app_id=app_id, end_user_id=end_user_id_for(app_id, "ann"), name="cat.png", size=3,
        extension="png", mime_type="image/png", key="k")
    unchanged(world.run(upload))
    rejected(world.run(upload.model_copy(update={"file_id": uuid4()}), as_=world.rival),
             errors.AppNotFound)


@covers(cc.CreateAnnotation, cc.UpdateAnnotation, cc.DeleteAnnotation)
def test_annotations_created_updated_and_deleted(world: World) -> None:
    app_id, annotation_id = world.app(), uuid4()
    create = cc.CreateAnnotation(app_id=app_id, annotation_id=annotation_id,
                                 question="Opening hours?", answer="9 to 5.")
    ran = accepted(world.run(create), annotation_id=str(annotation_id))
    assert ran.one(ce.AnnotationCreated) == ce.AnnotationCreated(
        app_id=app_id, annotation_id=annotation_id, question="Opening hours?", answer="9 to 5.")
    unchanged(world.run(create))  # the same request decided again
    update = cc.UpdateAnnotation(app_id=app_id, annotation_id=annotation_id,
                                 question="Opening hours?", answer="9 to 6.")
    assert accepted(world.run(update)).one(ce.AnnotationUpdated).answer == "9 to 6."
    unchanged(world.run(update))
    # another app's annotation, another workspace's app: not found
    rejected(world.run(update.model_copy(update={"app_id": world.app("Other")})),
             errors.AnnotationNotFound)
    rejected(world.run(update, as_=world.rival), errors.AppNotFound)
    delete = cc.DeleteAnnotation(app_id=app_id, annotation_id=annotation_id)
    assert accepted(world.run(delete)).types == ["AnnotationDeleted"]
    rejected(world.run(delete), errors.AnnotationNotFound)
    rejected(world.run(update), errors.AnnotationNotFound)


@covers(cc.ConfigureAnnotationReply)
def test_configure_annotation_reply_requests_a_job(world: World) -> None:
    app_id, job_id = world.app(), uuid4()
    enable = cc.ConfigureAnnotationReply(
        app_id=app_id, job_id=job_id, action="enable", score_threshold=0.9,
        embedding_provider_name="openai", embedding_model_name="text-embedding-3-small")
    ran = accepted(world.run(enable), job_id=str(job_id))
    assert ran.one(ce.AnnotationReplyRequested) == ce.AnnotationReplyRequested(
        app_id=app_id, job_id=job_id, action="enable", score_threshold=0.9,
        embedding_provider_name="openai", embedding_model_name="text-embedding-3-small")
    unchanged(world.run(enable))
    rejected(world.run(enable.model_copy(update={"job_id": uuid4()}), as_=world.rival),
             errors.AppNotFound)


@covers(cc.ExpireMessages)
def test_expired_messages_leave_the_conversations_memory_once(world: World) -> None:
    app_id, conversation_id = world.app(), uuid4()
    old, pending = ask(app_id, conversation_id, "Old?"), ask(app_id, conversation_id, new=False)
    world.given(old)
    world.given(pending)
    cause = uuid4()
    uow = UnitOfWork(world.store, Context(tenant_id=world.me.tenant_id, actor_id=None,
                                          correlation_id=cause, causation_id=cause))
    uow.get(Conversation, conversation_id).finish(ce.MessageAnswered(
        message_id=old.message_id, answer="Yes.", usage={}), uow.ctx)
    uow.commit()

    expire = cc.ExpireMessages(conversation_id=conversation_id,
                               message_ids=[old.message_id, pending.message_id, uuid4()])
    # a message still being answered stays; one of no such id is ignored
    ran = accepted(world.run(expire), expired=[str(old.message_id)])
    assert ran.one(ce.MessagesExpired).message_ids == [old.message_id]
    unchanged(world.run(expire))
    conversation = UnitOfWork(world.store, uow.ctx).get(Conversation, conversation_id)
    assert conversation.history(before=uuid4()) == []  # the model no longer remembers it
