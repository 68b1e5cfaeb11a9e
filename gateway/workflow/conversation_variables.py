"""`GET /v1/conversations/{conversation_id}/variables` (Service API): a chatflow
(advanced-chat) conversation's variables as its latest run left them, described by that
run's workflow version; a chat app's conversations have none. Read from the runs' events,
so a turn's writes show as soon as its run recorded them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID, uuid5

from fastapi import APIRouter, Query, Request

from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.conversation.conversations import Limit, User, visible_conversation
from gateway.deps import get_container
from gateway.platform.service import app_of_key
from gateway.views import timestamp
from projections.conversation import queries
from schemas.conversation.naming import DEFAULT_END_USER
from schemas.errors import BadRequest
from schemas.workflow import events as ev
from schemas.workflow.naming import chat_run_id_for
from workflow_graph.variables import to_text

router = APIRouter(prefix="/v1")
LOOK_BACK_MESSAGES = 20  # turns whose run never started (failed early) are passed over


@router.get("/conversations/{conversation_id}/variables")
async def conversation_variables(
        request: Request, conversation_id: str, user: User = DEFAULT_END_USER,
        key: ApiKeyPrincipal = AppKey, limit: Limit = 20, last_id: str | None = None,
        variable_name: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
) -> dict[str, Any]:
    conversation = await visible_conversation(request, key, conversation_id, user)
    app = await app_of_key(request, key)
    items = await _variables(request, conversation) if app["mode"] == "advanced-chat" else []
    if variable_name is not None:
        items = [v for v in items if v["name"] == variable_name]
    if last_id:
        ids = [v["id"] for v in items]
        if last_id not in ids:
            raise BadRequest("last_id does not match any variable in this conversation.")
        items = items[ids.index(last_id) + 1:]
    return {"limit": limit, "has_more": len(items) > limit, "data": items[:limit]}


async def _variables(request: Request, conversation: dict[str, Any]) -> list[dict[str, Any]]:
    c = get_container(request)
    recent = await queries.conversation_messages(c.engine, conversation["id"], first_id=None,
                                                 limit=LOOK_BACK_MESSAGES)
    for message in reversed(recent.items if recent else []):
        run = await asyncio.to_thread(c.store.load, chat_run_id_for(message["id"]))
        values = ev.conversation_variables_left([e.payload for e in run])
        if values is None:
            continue
        started = run[0].payload
        assert isinstance(started, ev.WorkflowRunStarted)
        version = await asyncio.to_thread(c.store.load, started.workflow_id)
        spec = version[0].payload
        assert isinstance(spec, ev.WorkflowVersionCreated)
        created, updated = timestamp(conversation["created_at"]), int(
            run[-1].occurred_at.timestamp())
        return [{"id": str(d.get("id") or _name_id(conversation["id"], d["name"])),
                 "name": d["name"], "value_type": d.get("value_type", "string"),
                 "value": to_text(values.get(d["name"], d.get("value"))),
                 "description": d.get("description", ""), "created_at": created,
                 "updated_at": updated} for d in spec.conversation_variables]
    return []


def _name_id(conversation_id: UUID, name: str) -> UUID:
    # a definition without an id (a hand-written DSL): one stable id per name
    return uuid5(conversation_id, name)
