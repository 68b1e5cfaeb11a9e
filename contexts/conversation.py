"""The conversation context: how an app runs (model config, web site), end users,
conversations and messages. Its chat processor replaces Dify's request-thread LLM calls
and its `conversation` queue."""

from __future__ import annotations

from commands.conversation import aggregates, handlers
from contexts.manifest import ContextManifest, payloads_in
from events.routing import WorkRoute
from gateway.conversation import annotations as annotation_routes
from gateway.conversation import (
    audio,
    config,
    conversations,
    files,
    messages,
    suggested,
)
from projections.conversation import projectors
from projections.tables import PROJECTION_NAME
from schemas.conversation import events
from schemas.conversation.topics import ANNOTATIONS, CHAT, CLEANUP
from schemas.platform import events as platform_events
from workers.conversation.processors import PROCESSORS

CONVERSATION = ContextManifest(
    name="conversation",
    aggregates=[aggregates.AppConfig, aggregates.Conversation, aggregates.UploadFile,
                aggregates.AnnotationSet],
    events=payloads_in(events),
    upcasters=events.UPCASTERS,
    handlers=[handlers.HANDLERS],
    projectors={PROJECTION_NAME: [projectors.PROJECTORS]},
    routers=[config.console_router, config.service_router, messages.router,
             conversations.router, suggested.router, files.router, audio.router,
             annotation_routes.router],
    work_topics=[CHAT, ANNOTATIONS, CLEANUP],
    routes=[WorkRoute(CHAT, [events.MessageCreated]),
            WorkRoute(ANNOTATIONS, [events.AnnotationReplyRequested, events.AnnotationCreated,
                                    events.AnnotationUpdated, events.AnnotationDeleted]),
            WorkRoute(CLEANUP, [platform_events.AppDeleted])],
    processors=PROCESSORS,
)
