"""A chatflow (advanced-chat) conversation's variables (Service API): `GET
/v1/conversations/{conversation_id}/variables` answers them as its latest run left them,
described by that run's workflow version (a chat app's conversations have none); `PUT
…/variables/{variable_id}` sets one on that run, so the next turn starts from it. Read from
the runs' events, so a turn's writes show as soon as its run recorded them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID, uuid5

from fastapi import APIRouter, Query, Request

from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.conversation.conversations import Limit, User, visible_conversation
from gateway.deps import command_gateway, get_container
from gateway.platform.service import app_of_key
from gateway.views import timestamp
from projections.conversation import queries
from schemas.conversation.naming import DEFAULT_END_USER
from schemas.errors import BadRequest, ConversationVariableNotFound
from schemas.workflow import commands as cmd
from schemas.workflow import events as ev
from schemas.workflow.api import ConversationVariableUpdateRequest
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
    items = (await _latest(request, key, conversation)).items
    if variable_name is not None:
        items = [v for v in items if v["name"] == variable_name]
    if last_id:
        ids = [v["id"] for v in items]
        if last_id not in ids:
            raise BadRequest("last_id does not match any variable in this conversation.")
        items = items[ids.index(last_id) + 1:]
    return {"limit": limit, "has_more": len(items) > limit, "data": items[:limit]}


@router.put("/conversations/{conversation_id}/variables/{variable_id}")
async def update_conversation_variable(
        request: Request, conversation_id: str, variable_id: str,
        body: ConversationVariableUpdateRequest, key: ApiKeyPrincipal = AppKey,
) -> dict[str, Any]:
    conversation = await visible_conversation(request, key, conversation_id, body.user)
    latest = await _latest(request, key, conversation)
    item = next((v for v in latest.items if v["id"] == variable_id), None)
    if item is None or latest.run_id is None:
        raise ConversationVariableNotFound()
    given = _type_of(body.value)
    if not _fits(item["value_type"], body.value):
        raise BadRequest(f"Type mismatch: variable '{item['name']}' expects "
                         f"{item['value_type']}, but got {given} type")
    await command_gateway(request).send(
        cmd.UpdateConversationVariable(run_id=latest.run_id, conversation_id=conversation["id"],
                                       name=item["name"], value=body.value, user=body.user),
        aggregate_id=latest.run_id, tenant_id=key.tenant_id, actor_id=key.actor_id,
        read_your_writes=False)
    return {**item, "value": to_text(body.value), "updated_at": int(time.time())}


@dataclass(frozen=True)
class _Variables:
    run_id: UUID | None  # the run that last left them
    items: list[dict[str, Any]]


async def _latest(request: Request, key: ApiKeyPrincipal,
                  conversation: dict[str, Any]) -> _Variables:
    if (await app_of_key(request, key))["mode"] != "advanced-chat":
        return _Variables(None, [])
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
        return _Variables(run[0].aggregate_id, [
            {"id": str(d.get("id") or _name_id(conversation["id"], d["name"])),
             "name": d["name"], "value_type": d.get("value_type", "string"),
             "value": to_text(values.get(d["name"], d.get("value"))),
             "description": d.get("description", ""), "created_at": created,
             "updated_at": updated} for d in spec.conversation_variables])
    return _Variables(None, [])


def _type_of(value: Any) -> str:
    """A JSON value's type as Dify's mismatch message names it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def _fits(value_type: str, value: Any) -> bool:
    """Dify's check of a new value against the variable's declared type."""
    if value_type.startswith("array"):
        if not isinstance(value, list):
            return False
        item_type = value_type.removeprefix("array[").removesuffix("]")
        return value_type == "array[any]" or value_type == "array" or all(
            _type_of(item) == item_type for item in value)
    if value_type == "secret":
        return isinstance(value, str)
    return _type_of(value) == value_type


def _name_id(conversation_id: UUID, name: str) -> UUID:
    # a definition without an id (a hand-written DSL): one stable id per name
    return uuid5(conversation_id, name)
