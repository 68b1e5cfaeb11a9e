"""Request bodies of the workflow context's HTTP API (Service API)."""

from __future__ import annotations

from typing import Any, Literal

from schemas.base import Body
from schemas.conversation.api import USER, InputFile


class WorkflowRunRequest(Body):
    """POST /v1/workflows/run, /v1/workflows/{workflow_id}/run (Dify's
    WorkflowExecutionRequest)."""

    inputs: dict[str, Any]
    response_mode: Literal["streaming", "blocking"] | None = None
    user: str = USER
    files: list[InputFile] | None = None
