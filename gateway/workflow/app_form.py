"""A workflow or advanced-chat app's features and input form, which the conversation
context's /v1/parameters answers for these modes (`APP_FORM_SOURCES`), as Dify's
AppParameterApi does: from the published version (app_unavailable without one), each start
node variable in Dify's old structure, `{type: variable}`."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from gateway.conversation.config import APP_FORM_SOURCES
from gateway.workflow.inputs import start_variables
from gateway.workflow.runs import published_version
from schemas.workflow.naming import WORKFLOW_APP_MODES


async def published_form(request: Request, app: dict[str, Any]
                         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    version = await published_version(request, app["id"])
    form = [{str(variable.get("type")): dict(variable)}
            for variable in start_variables(version.graph)]
    return dict(version.features), form


def register() -> None:
    """Called once by the workflow context's manifest."""
    for mode in WORKFLOW_APP_MODES:
        APP_FORM_SOURCES[mode] = published_form
