"""The conversation context: how an app runs (model config, web site), end users,
conversations and messages. Its chat processor replaces Dify's request-thread LLM calls
and its `conversation` queue."""

from __future__ import annotations

from commands.conversation import aggregates, handlers
from contexts.manifest import ContextManifest, payloads_in
from events.routing import Route
from gateway.conversation import annotations as annotation_routes
from gateway.conversation import (
    audio,
    config,
    conversations,
    files,
    messages,
    statistics,
    suggested,
)
from projections.conversation import projectors
from projections.statistics.projectors import statistics_projectors
from projections.statistics.rules import CONVERSATION_RULES
from projections.statistics.tables import STATISTICS
from projections.tables import PROJECTION_NAME
from schemas.conversation import events
from schemas.platform import events as platform_events
from workers.conversation.processors import (
    annotation_processor,
    chat_processor,
    cleanup_processor,
)
from workers.declarations import WorkTopic

# MessageCreated: the chat processor answers it (what Dify's request threads did), except an
# advanced-chat app's, which a workflow run answers (the workflow context routes those).
CHAT = WorkTopic("conversation.chat", role="chat", processor=chat_processor,
                 routes=[Route([events.MessageCreated],
                               when=lambda p: getattr(p, "mode", None) != "advanced-chat")])
# An app's annotation events (one app's in order): annotation reply jobs and the reply index.
ANNOTATIONS = WorkTopic("conversation.annotations", role="annotations",
                        processor=annotation_processor, routes=[Route([
                            events.AnnotationReplyRequested, events.AnnotationCreated,
                            events.AnnotationUpdated, events.AnnotationDeleted])])
# AppDeleted (platform): the app's conversations, messages and files go with it.
CLEANUP = WorkTopic("conversation.cleanup", role="cleanup", processor=cleanup_processor,
                    routes=[Route([platform_events.AppDeleted])])

CONVERSATION = ContextManifest(
    name="conversation",
    aggregates=[aggregates.AppConfig, aggregates.Conversation, aggregates.UploadFile,
                aggregates.AnnotationSet],
    events=payloads_in(events),
    upcasters=events.UPCASTERS,
    handlers=[handlers.HANDLERS],
    projectors={PROJECTION_NAME: [projectors.PROJECTORS],
                STATISTICS: [statistics_projectors(CONVERSATION_RULES, payloads_in(events))]},
    routers=[config.console_router, config.service_router, messages.router,
             conversations.router, suggested.router, files.router, audio.router,
             annotation_routes.router, statistics.router],
    work=[CHAT, ANNOTATIONS, CLEANUP],
)
