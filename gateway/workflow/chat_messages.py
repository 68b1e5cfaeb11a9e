"""An advanced-chat (chatflow) app's message, checked as Dify's advanced-chat generator
checks it before anything is recorded: the app has a published workflow (else
app_unavailable), the inputs match its start node's variables, uploads are this user's.
Registered with the conversation context's /v1/chat-messages (`MESSAGE_PREPARERS`), which
records the message; the chatflow processor then starts its run."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from gateway.auth import ApiKeyPrincipal
from gateway.conversation.messages import MESSAGE_PREPARERS
from gateway.deps import get_container
from gateway.workflow.files import input_files, run_files
from gateway.workflow.inputs import start_variables, validate_run_inputs
from gateway.workflow.runs import published_version
from schemas.conversation import api


async def prepare_chatflow_message(request: Request, app: dict[str, Any],
                                   key: ApiKeyPrincipal, body: api.CompletionMessageRequest
                                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    c = get_container(request)
    version = await published_version(request, app["id"])
    variables = start_variables(version.graph)
    inputs = await input_files(c.engine, app["id"], key.tenant_id, body.user, variables,
                               validate_run_inputs(variables, body.inputs))
    files = await run_files(c.engine, app["id"], key.tenant_id, body.user,
                            [f.model_dump() for f in body.files or []])
    return inputs, files


def register() -> None:
    """Called once by the workflow context's manifest."""
    MESSAGE_PREPARERS["advanced-chat"] = prepare_chatflow_message
