"""Request bodies of the workflow context's HTTP API (console and Service API), validated
at the edge."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import Field, model_validator

from schemas.base import Body
from schemas.conversation.api import USER, InputFile


class EnvironmentVariable(Body):
    """Dify's environment variable: each has an id of its own (a secret sent back unchanged
    as HIDDEN_VALUE is found by it)."""

    id: str = Field(min_length=1, max_length=255)
    name: str = Field(min_length=1, max_length=255)
    value_type: Literal["string", "number", "secret"]
    value: Any = None
    description: str = ""
    selector: list[str] = []


    @model_validator(mode="after")
    def _number_is_a_number(self) -> EnvironmentVariable:
        if self.value_type == "number" and (isinstance(self.value, bool)
                                            or not isinstance(self.value, int | float)):
            raise ValueError(f"environment variable {self.name!r} must have a number value")
        return self


class ConversationVariable(Body):
    """Dify's conversation variable (advanced-chat): what a conversation starts with."""

    id: str = Field(min_length=1, max_length=255)
    name: str = Field(min_length=1, max_length=255)
    value_type: Literal["string", "number", "object", "boolean", "array[string]",
                        "array[number]", "array[object]", "array[boolean]"]
    value: Any = None
    description: str = ""
    selector: list[str] = []


def _unique_names(variables: list[Any], kind: str) -> None:
    names = [v.name for v in variables]
    if len(set(names)) != len(names):
        raise ValueError(f"{kind} variable names must be unique")


class SyncDraftRequest(Body):
    graph: dict[str, Any]
    features: dict[str, Any] = {}
    environment_variables: list[EnvironmentVariable] = []
    conversation_variables: list[ConversationVariable] = []
    hash: str | None = None

    @model_validator(mode="after")
    def _unique(self) -> SyncDraftRequest:
        _unique_names(self.environment_variables, "environment")
        _unique_names(self.conversation_variables, "conversation")
        return self


class PublishRequest(Body):
    marked_name: str = Field(default="", max_length=20)
    marked_comment: str = Field(default="", max_length=100)


class DraftRunRequest(Body):
    inputs: dict[str, Any] = {}
    files: list[InputFile] | None = None


class NodeRunRequest(Body):
    inputs: dict[str, Any] = {}


class ImportRequest(Body):
    mode: Literal["yaml-content", "yaml-url"]
    yaml_content: str | None = None
    yaml_url: str | None = Field(default=None, max_length=2048)
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=400)
    icon_type: str | None = None
    icon: str | None = Field(default=None, max_length=255)
    icon_background: str | None = Field(default=None, max_length=32)
    app_id: UUID | None = None


class WorkflowRunRequest(Body):
    """POST /v1/workflows/run, /v1/workflows/{workflow_id}/run (Dify's
    WorkflowExecutionRequest)."""

    inputs: dict[str, Any]
    response_mode: Literal["streaming", "blocking"] | None = None
    user: str = USER
    files: list[InputFile] | None = None


class ConversationVariableUpdateRequest(Body):
    """PUT /v1/conversations/{conversation_id}/variables/{variable_id}"""

    value: Any
    user: str = USER
