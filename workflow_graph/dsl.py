"""Dify's app DSL (the YAML an app exports and imports), versions 0.1.x to current.

Reading follows Dify's `AppDslService.import_app`: a missing `version` is 0.1.0, a missing or
other `kind` is `app`, the version must be text (YAML `0.1` is a number: refused), `app.mode`
is required, workflow and advanced-chat apps need `workflow`, the others `model_config`. The
version decides the import's status as Dify's `check_version_compatibility` does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from workflow_graph.errors import DslError
from workflow_graph.graph import Graph, parse_graph

# Dify's (api/services/app_dsl_service.py)
CURRENT_DSL_VERSION = "0.5.0"
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


class AppMode(StrEnum):
    WORKFLOW = "workflow"
    ADVANCED_CHAT = "advanced-chat"
    CHAT = "chat"
    AGENT_CHAT = "agent-chat"
    COMPLETION = "completion"

    @property
    def has_workflow(self) -> bool:
        return self in {AppMode.WORKFLOW, AppMode.ADVANCED_CHAT}


class ImportStatus(StrEnum):
    COMPLETED = "completed"
    COMPLETED_WITH_WARNINGS = "completed-with-warnings"  # an older minor version
    PENDING = "pending"  # a newer version, or an older major one: the user confirms
    FAILED = "failed"  # not imported: the answer's `error` says why


@dataclass(frozen=True)
class WorkflowVariable:
    """An environment or conversation variable declared by the workflow."""

    name: str
    value_type: str
    value: Any
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def secret(self) -> bool:
        return self.value_type == "secret"


@dataclass(frozen=True)
class WorkflowSpec:
    graph: Graph
    features: Mapping[str, Any]
    environment_variables: tuple[WorkflowVariable, ...]
    conversation_variables: tuple[WorkflowVariable, ...]


@dataclass(frozen=True)
class AppDsl:
    version: str
    mode: AppMode
    name: str
    app: Mapping[str, Any]  # name, description, icon… as read
    workflow: WorkflowSpec | None
    model_config: Mapping[str, Any] | None
    dependencies: tuple[Mapping[str, Any], ...] = ()

    @property
    def status(self) -> ImportStatus:
        return version_status(self.version)


def parse_version(version: str) -> tuple[int, int, int]:
    match = _VERSION.match(version.strip())
    if match is None:
        raise DslError("version", f"{version!r} is not a version like 0.1.5")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def version_status(imported: str, current: str = CURRENT_DSL_VERSION) -> ImportStatus:
    theirs, ours = parse_version(imported), parse_version(current)
    if theirs > ours or theirs[0] < ours[0]:
        return ImportStatus.PENDING
    if theirs[1] < ours[1]:
        return ImportStatus.COMPLETED_WITH_WARNINGS
    return ImportStatus.COMPLETED


def load_dsl(text: str) -> AppDsl:
    """Read a DSL document; DslError names the field that is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DslError("", f"Invalid YAML format: {error}") from error
    if not isinstance(data, Mapping):
        raise DslError("", "Invalid YAML format: content must be a mapping")
    return parse_dsl(data)


def parse_dsl(data: Mapping[str, Any]) -> AppDsl:
    version = data.get("version") or "0.1.0"
    if not isinstance(version, str):
        raise DslError("version", f"must be text (quote it), got {type(version).__name__}")
    parse_version(version)
    app = data.get("app")
    if not isinstance(app, Mapping) or not app:
        raise DslError("app", "Missing app data in YAML content")
    raw_mode = app.get("mode")
    if not raw_mode:
        raise DslError("app.mode", "is required")
    try:
        mode = AppMode(raw_mode)
    except ValueError as error:
        raise DslError("app.mode", f"{raw_mode!r} is not one of "
                                   f"{', '.join(m.value for m in AppMode)}") from error
    workflow = model_config = None
    if mode.has_workflow:
        raw_workflow = data.get("workflow")
        if not isinstance(raw_workflow, Mapping):
            raise DslError("workflow", "Missing workflow data for workflow/advanced chat app")
        workflow = _parse_workflow(raw_workflow)
    else:
        model_config = data.get("model_config")
        if not isinstance(model_config, Mapping):
            raise DslError("model_config",
                           "Missing model_config for chat/agent-chat/completion app")
    dependencies = data.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise DslError("dependencies", "must be a list")
    return AppDsl(version=version, mode=mode, name=str(app.get("name") or ""), app=app,
                  workflow=workflow, model_config=model_config,
                  dependencies=tuple(dependencies))


def _parse_workflow(raw: Mapping[str, Any]) -> WorkflowSpec:
    features = raw.get("features") or {}
    if not isinstance(features, Mapping):
        raise DslError("workflow.features", "must be a mapping")
    return WorkflowSpec(
        graph=parse_graph(raw.get("graph"), "workflow.graph"),
        features=features,
        environment_variables=_parse_variables(raw, "environment_variables"),
        conversation_variables=_parse_variables(raw, "conversation_variables"),
    )


def _parse_variables(raw: Mapping[str, Any], key: str) -> tuple[WorkflowVariable, ...]:
    items = raw.get(key) or []
    if not isinstance(items, list):
        raise DslError(f"workflow.{key}", "must be a list")
    variables = []
    for i, item in enumerate(items):
        path = f"workflow.{key}[{i}]"
        if not isinstance(item, Mapping):
            raise DslError(path, "must be a mapping")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise DslError(f"{path}.name", "must be a non-empty string")
        variables.append(WorkflowVariable(name=name,
                                          value_type=str(item.get("value_type") or "string"),
                                          value=item.get("value"), raw=item))
    return tuple(variables)


def dump_dsl(dsl: AppDsl, *, include_secrets: bool = False) -> str:
    """Export as Dify does: the current DSL version, and secret environment variables with an
    empty value unless the user asks for them."""
    data: dict[str, Any] = {"app": dict(dsl.app), "kind": "app", "version": CURRENT_DSL_VERSION}
    if dsl.workflow is not None:
        spec = dsl.workflow
        data["workflow"] = {
            "conversation_variables": [dict(v.raw) for v in spec.conversation_variables],
            "environment_variables": [
                dict(v.raw) | ({} if include_secrets or not v.secret else {"value": ""})
                for v in spec.environment_variables],
            "features": dict(spec.features),
            "graph": dict(spec.graph.raw),
        }
    if dsl.model_config is not None:
        data["model_config"] = dict(dsl.model_config)
    data["dependencies"] = list(dsl.dependencies)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
