"""Dify's published Service API spec (`docs/dify/openapi_service.json`, vendored) as JSON
Schema: validate answers and SSE events against its component schemas.

OpenAPI 3.0's `nullable: true` becomes "or null", and a `oneOf` whose branches require no
key becomes `anyOf`; `$ref`s resolve inside the spec. Every property the spec declares is
checked (types, enums, formats such as uuid, nested shapes).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_URI = "urn:dify:openapi_service"


def _spec_path() -> Path:
    return Path(__file__).resolve().parents[1] / "docs" / "dify" / "openapi_service.json"


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        node.pop("discriminator", None)  # names the mapping; the enums check the event
        if "oneOf" in node:
            # The spec's oneOf branches require no keys, so any object matches all of them.
            node["anyOf"] = node.pop("oneOf")
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@functools.cache
def spec_document() -> dict[str, Any]:
    """The spec as published (read once; callers must not change it)."""
    return json.loads(_spec_path().read_text())  # type: ignore[no-any-return]


@functools.cache
def _registry() -> tuple[dict[str, Any], Registry]:
    spec = _nullable(copy.deepcopy(spec_document()))
    resource = Resource(contents=spec, specification=DRAFT202012)
    return spec, Registry().with_resource(_URI, resource)


def validate(component: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError unless `instance` matches the component schema."""
    spec, registry = _registry()
    assert component in spec["components"]["schemas"], component
    schema = {"$ref": f"{_URI}#/components/schemas/{component}"}
    Draft202012Validator(schema, registry=registry,
                         format_checker=Draft202012Validator.FORMAT_CHECKER).validate(instance)


def chat_event_schema(event: str) -> str:
    """The component an SSE event of a chat app must match (the spec's discriminator)."""
    mapping = spec_document()["components"]["schemas"]["ChunkChatEvent"]["discriminator"][
        "mapping"]
    return str(mapping[event]).rsplit("/", 1)[1]


def workflow_event_schema(event: str) -> str:
    """The component an SSE event of a workflow app must match."""
    mapping = spec_document()["components"]["schemas"]["ChunkWorkflowEvent"][
        "discriminator"]["mapping"]
    return str(mapping[event]).rsplit("/", 1)[1]


def completion_event_schema(event: str) -> str:
    mapping = spec_document()["components"]["schemas"]["ChunkCompletionEvent"][
        "discriminator"]["mapping"]
    return str(mapping[event]).rsplit("/", 1)[1]
