"""Conversations, their messages, feedback and end users (Service API). An app key sees
only its app's end users; each end user only their own conversations."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.deps import command_gateway, get_container, maybe_uuid, parse_id
from gateway.params import Page
from gateway.platform.service import app_of_key
from gateway.views import timestamp
from projections.conversation import queries
from schemas.conversation import api
from schemas.conversation import commands as cmd
from schemas.conversation.naming import DEFAULT_END_USER, end_user_id_for
from schemas.errors import (
    BadRequest,
    ConversationNotFound,
    EndUserNotFound,
    MessageNotFound,
    NotChatApp,
    NotFound,
)

router = APIRouter(prefix="/v1")
# Optional, as Dify reads it: a read without `user` is the default end user's.
User = Annotated[str, Query(min_length=1, max_length=255)]
Limit = Annotated[int, Query(ge=1, le=100)]
SORT = "^-?(created_at|updated_at)$"


async def chat_app(request: Request, key: ApiKeyPrincipal) -> dict[str, Any]:
    app = await app_of_key(request, key)
    if app["mode"] not in ("chat", "agent-chat", "advanced-chat"):
        raise NotChatApp()
    return app


def conversation_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "inputs": row["inputs"],
            "status": row["status"], "introduction": "",
            "created_at": timestamp(row["created_at"]),
            "updated_at": timestamp(row["updated_at"])}


def message_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "conversation_id": str(row["conversation_id"]),
        "parent_message_id": None, "inputs": row["inputs"], "query": row["query"],
        "answer": row["answer"], "message_files": [],
        "feedback": {"rating": row["feedback_rating"]} if row["feedback_rating"] else None,
        "retriever_resources": row["retriever_resources"], "agent_thoughts": [],
        "created_at": timestamp(row["created_at"]), "status": row["status"],
        "error": row["error"],
    }


@router.get("/conversations")
async def list_conversations(request: Request, user: User = DEFAULT_END_USER,
                             key: ApiKeyPrincipal = AppKey,
                             last_id: str | None = None, limit: Limit = 20,
                             sort_by: Annotated[str, Query(pattern=SORT)] = "-updated_at"
                             ) -> dict[str, Any]:
    app = await chat_app(request, key)
    last = parse_id(last_id, ConversationNotFound) if last_id else None
    page = await queries.list_conversations(
        get_container(request).engine, app["id"], end_user_id_for(app["id"], user),
        last_id=last, limit=limit, sort_by=sort_by)
    if page is None:
        raise NotFound("Last Conversation Not Exists.")
    return {"limit": limit, "has_more": page.total > 0,
            "data": [conversation_view(r) for r in page.items]}


@router.get("/messages")
async def list_messages(request: Request, conversation_id: str,
                        user: User = DEFAULT_END_USER, key: ApiKeyPrincipal = AppKey,
                        first_id: str | None = None, limit: Limit = 20) -> dict[str, Any]:
    app = await chat_app(request, key)
    engine = get_container(request).engine
    target = parse_id(conversation_id, ConversationNotFound)
    if await queries.conversation(engine, app["id"], end_user_id_for(app["id"], user),
                                  target) is None:
        raise ConversationNotFound()
    first = parse_id(first_id, MessageNotFound) if first_id else None
    page = await queries.conversation_messages(engine, target, first_id=first, limit=limit)
    if page is None:
        raise NotFound("First Message Not Exists.")
    return {"limit": limit, "has_more": page.total > 0,
            "data": [message_view(r) for r in page.items]}


async def _conversation_command(request: Request, key: ApiKeyPrincipal,
                                payload: cmd.RenameConversation | cmd.DeleteConversation
                                ) -> None:
    await command_gateway(request).send(payload, aggregate_id=payload.conversation_id,
                                        tenant_id=key.tenant_id, actor_id=key.actor_id)


@router.post("/conversations/{conversation_id}/name")
async def rename(request: Request, conversation_id: str, body: api.RenameConversationRequest,
                 key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await chat_app(request, key)
    target = parse_id(conversation_id, ConversationNotFound)
    engine = get_container(request).engine
    end_user_id = end_user_id_for(app["id"], body.user)
    row = await queries.conversation(engine, app["id"], end_user_id, target)
    if row is None:
        raise ConversationNotFound()
    if body.auto_generate:
        history = await queries.conversation_messages(engine, target, first_id=None, limit=100)
        first = history.items[0]["query"] if history and history.items else row["name"]
        name = " ".join(first.split())[:50]
    elif body.name:
        name = body.name
    else:
        raise BadRequest("name is required when auto_generate is false")
    await _conversation_command(request, key, cmd.RenameConversation(
        conversation_id=target, app_id=app["id"], user=body.user, name=name))
    renamed = await queries.conversation(engine, app["id"], end_user_id, target)
    assert renamed is not None
    return conversation_view(renamed)


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete(request: Request, conversation_id: str, body: api.UserRequest,
                 key: ApiKeyPrincipal = AppKey) -> Response:
    app = await chat_app(request, key)
    await _conversation_command(request, key, cmd.DeleteConversation(
        conversation_id=parse_id(conversation_id, ConversationNotFound), app_id=app["id"],
        user=body.user))
    return Response(status_code=204)


async def visible_conversation(request: Request, key: ApiKeyPrincipal, conversation_id: str,
                               user: str) -> dict[str, Any]:
    app = await chat_app(request, key)
    row = await queries.conversation(get_container(request).engine, app["id"],
                                     end_user_id_for(app["id"], user),
                                     parse_id(conversation_id, ConversationNotFound))
    if row is None:
        raise ConversationNotFound()
    return row


@router.post("/messages/{message_id}/feedbacks")
async def feedback(request: Request, message_id: str, body: api.FeedbackRequest,
                   key: ApiKeyPrincipal = AppKey) -> dict[str, str]:
    app = await app_of_key(request, key)
    target = parse_id(message_id, MessageNotFound)
    row = await queries.message(get_container(request).engine, app["id"], target)
    if row is None or row["end_user_id"] != end_user_id_for(app["id"], body.user):
        raise MessageNotFound()
    await command_gateway(request).send(
        cmd.GiveMessageFeedback(conversation_id=row["conversation_id"], message_id=target,
                                app_id=app["id"], user=body.user, rating=body.rating,
                                content=body.content),
        aggregate_id=row["conversation_id"], tenant_id=key.tenant_id, actor_id=key.actor_id)
    return {"result": "success"}


@router.get("/app/feedbacks")
async def app_feedbacks(request: Request, key: ApiKeyPrincipal = AppKey,
                        page: Page = 1,
                        limit: Limit = 20) -> dict[str, Any]:
    app = await app_of_key(request, key)
    found = await queries.app_feedbacks(get_container(request).engine, app["id"], page=page,
                                        limit=limit)
    return {"data": [{
        "id": str(r["id"]), "app_id": str(r["app_id"]),
        "conversation_id": str(r["conversation_id"]), "message_id": str(r["id"]),
        "rating": r["feedback_rating"], "content": r["feedback_content"],
        "from_source": "api", "from_end_user_id": str(r["end_user_id"]),
        # this listing's times are ISO 8601 strings in Dify's spec
        "from_account_id": None, "created_at": r["feedback_at"].isoformat(),
        "updated_at": r["feedback_at"].isoformat(),
    } for r in found.items]}


@router.get("/end-users/{end_user_id}")
async def end_user(request: Request, end_user_id: str,
                   key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await app_of_key(request, key)
    target: UUID | None = maybe_uuid(end_user_id)
    row = await queries.end_user(get_container(request).engine, app["id"], target) \
        if target else None
    if row is None:
        raise EndUserNotFound()
    return {"id": str(row["id"]), "tenant_id": str(row["tenant_id"]),
            "app_id": str(row["app_id"]), "type": row["type"],
            "external_user_id": row["session_id"], "name": None, "is_anonymous": False,
            "session_id": row["session_id"], "created_at": row["created_at"].isoformat(),
            "updated_at": row["created_at"].isoformat()}
