"""An advanced-chat (chatflow) app's message, checked as Dify's advanced-chat generator
checks it before anything is recorded: the app has a published workflow (else
app_unavailable), the inputs match its start node's variables, uploads are this user's.
Registered with the conversation context's /v1/chat-messages (`MESSAGE_PREPARERS`), which
records the message; the chatflow processor then starts its run. Its stop
(`TASK_STOPPERS`) also ends the message's run if it is paused for human input."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request

from gateway.auth import ApiKeyPrincipal
from gateway.conversation.messages import MESSAGE_PREPARERS, TASK_STOPPERS
from gateway.deps import get_container
from gateway.workflow.files import run_arguments
from gateway.workflow.runs import published_version, stop_task
from schemas.conversation import api


async def prepare_chatflow_message(request: Request, app: dict[str, Any],
                                   key: ApiKeyPrincipal, body: api.CompletionMessageRequest
                                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    version = await published_version(request, app["id"])
    return await run_arguments(get_container(request).engine, app["id"], key.tenant_id,
                               body.user, version.graph, body.inputs, body.files)


async def stop_chatflow_message(request: Request, key: ApiKeyPrincipal, task_id: UUID,
                                owner: str) -> None:
    assert key.app_id is not None
    await stop_task(request, key.app_id, task_id, owner, key.tenant_id, key.actor_id)


def register() -> None:
    """Called once by the workflow context's manifest."""
    MESSAGE_PREPARERS["advanced-chat"] = prepare_chatflow_message
    TASK_STOPPERS["advanced-chat"] = stop_chatflow_message
