"""Checks an answer of the Knowledge Service API against Dify's published spec
(`docs/dify/openapi_service.json`): the operation's response schema for that status,
and every key of the spec's examples for it, recursively.

The harness runs `check_answer` on every `/v1/datasets…` answer an e2e test receives, so a
test that gets a non-conforming answer fails with the reasons.

The spec is OpenAPI 3.0 (`nullable`); its examples also show `null` for some fields whose
schema has no `nullable` (a dataset's `data_source_type` before its first document): null is
accepted wherever the spec's own example for that answer shows it. Where Dify itself answers
otherwise than the spec's schema, `DIFY_ANSWERS` says so, with the reason.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema

from tests.spec import spec_document

SERVICE_PREFIX = "/v1"
KNOWLEDGE_PREFIX = "/v1/datasets"

# `metadata=only|without` on the document detail (Dify's DocumentApi.get): the example shows
# the full answer, these narrow it.
_DOCUMENT_METADATA_ONLY = {"id", "doc_type", "doc_metadata"}
_DOCUMENT_METADATA_EXCLUDED = {"doc_type", "doc_metadata"}

# Dify's own answers that the spec's schemas do not allow: (schema, property) -> schema.
DIFY_ANSWERS: dict[tuple[str, str], dict[str, Any]] = {
    # a dataset created without a technique has none until its first document, and no
    # doc_form before it has documents (Dify's Dataset.doc_form reads its first document's)
    ("Dataset", "indexing_technique"): {"type": "string", "nullable": True},
    ("Dataset", "doc_form"): {"type": "string", "nullable": True},
}
# A document's custom metadata values keep their type (Dify's MetadataService stores the
# number given for a number field); only the built-in fields' values are strings.
METADATA_VALUE = {"type": ["string", "number"], "nullable": True}

# Paths Eddy also serves under Dify's older names (Dify's service API keeps them too).
_ALIASES = [(re.compile(r"/hit-testing$"), "/retrieve"),
            (re.compile(r"/(create|update)_by_(text|file)$"), r"/\1-by-\2")]


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    literal_segments: int
    spec: dict[str, Any]

    @property
    def operation_id(self) -> str:
        return str(self.spec.get("operationId", f"{self.method} {self.template}"))


@cache
def _operations() -> tuple[Operation, ...]:
    ops = []
    for template, item in spec_document()["paths"].items():
        segments = template.strip("/").split("/")
        regex = "/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in segments)
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                ops.append(Operation(method.upper(), template,
                                     re.compile(f"^{re.escape(SERVICE_PREFIX)}/{regex}$"),
                                     sum(not s.startswith("{") for s in segments), op))
    return tuple(ops)


def operation_for(method: str, path: str) -> Operation | None:
    """The spec's operation for a request; a literal segment beats a parameter
    (`/datasets/tags` is not `/datasets/{dataset_id}`)."""
    for alias, name in _ALIASES:
        path = alias.sub(name, path)
    matches = [o for o in _operations() if o.method == method and o.pattern.match(path)]
    return max(matches, key=lambda o: o.literal_segments, default=None)


def knowledge_operations() -> list[Operation]:
    return [o for o in _operations() if o.template.startswith("/datasets")]


@cache
def _components() -> dict[str, Any]:
    schemas = copy.deepcopy(spec_document()["components"]["schemas"])
    for (name, prop), schema in DIFY_ANSWERS.items():
        schemas[name]["properties"][prop] = schema
    return schemas  # type: ignore[no-any-return]


def _resolve(node: Any) -> Any:
    """The schema with every `$ref` inlined (the spec's refs are acyclic), and metadata
    values as Dify gives them."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return _resolve(copy.deepcopy(_components()[name]))
        resolved = {k: _resolve(v) for k, v in node.items()}
        item = resolved.get("properties", {}).get("doc_metadata", {}).get("items", {})
        if "value" in item.get("properties", {}):
            item["properties"]["value"] = METADATA_VALUE
        return resolved
    if isinstance(node, list):
        return [_resolve(v) for v in node]
    return node


def _nullable_where_example_is_null(schema: dict[str, Any], example: Any) -> None:
    if example is None:
        schema["nullable"] = True
    elif isinstance(example, dict):
        for key, value in example.items():
            sub = schema.get("properties", {}).get(key)
            if isinstance(sub, dict):
                _nullable_where_example_is_null(sub, value)
    elif isinstance(example, list) and example and isinstance(schema.get("items"), dict):
        for item in example:
            _nullable_where_example_is_null(schema["items"], item)


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema: `nullable: true` becomes "or null"."""
    if isinstance(node, list):
        return [_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def _missing_keys(example: Any, actual: Any, where: str) -> list[str]:
    """Keys of the example absent from the answer, recursively (list items against every
    example item's keys)."""
    if isinstance(example, dict) and isinstance(actual, dict):
        problems = []
        for key, value in example.items():
            if key not in actual:
                problems.append(f"{where}.{key}: missing (the spec's example has it)")
            else:
                problems += _missing_keys(value, actual[key], f"{where}.{key}")
        return problems
    if isinstance(example, list) and isinstance(actual, list) and example:
        keys: dict[str, Any] = {}
        for item in example:
            if isinstance(item, dict):
                keys.update(item)
        return [p for i, item in enumerate(actual)
                for p in _missing_keys(keys or example[0], item, f"{where}[{i}]")]
    return []


def _example_for(op: Operation, query: dict[str, str], example: Any) -> Any:
    if op.operation_id == "getDocumentDetail" and isinstance(example, dict):
        metadata = query.get("metadata", "all")
        if metadata == "only":
            return {k: v for k, v in example.items() if k in _DOCUMENT_METADATA_ONLY}
        if metadata == "without":
            return {k: v for k, v in example.items() if k not in _DOCUMENT_METADATA_EXCLUDED}
    return example


def check_answer(method: str, path: str, query: dict[str, str], status: int,
                 content_type: str, body: bytes) -> list[str]:
    """Every way the answer departs from the spec; empty when it conforms."""
    op = operation_for(method, path)
    if op is None:
        return [f"{method} {path}: no such operation in the spec"]
    label = f"{op.operation_id} ({method} {path} → {status})"
    if status >= 400:
        return [f"{label}: {p}" for p in _error_shape(status, content_type, body)]
    response = op.spec.get("responses", {}).get(str(status))
    if response is None:
        return [f"{label}: status {status} is not a documented answer "
                f"({', '.join(op.spec.get('responses', {}))})"]
    content = response.get("content") or {}
    if not content:
        return [f"{label}: expected no body"] if body.strip() else []
    media = content_type.split(";")[0].strip()
    if media not in content:
        return [f"{label}: content type {media!r}, the spec documents {', '.join(content)}"]
    if media != "application/json":
        return []  # binary (a ZIP): its content type is the contract
    try:
        answer = json.loads(body)
    except ValueError:
        return [f"{label}: body is not JSON"]
    spec = content[media]
    examples = [_example_for(op, query, e.get("value"))
                for e in (spec.get("examples") or {}).values()]
    if "example" in spec:
        examples.append(_example_for(op, query, spec["example"]))
    problems: list[str] = []
    if "schema" in spec:
        schema = _resolve(spec["schema"])
        for example in examples:
            _nullable_where_example_is_null(schema, example)
        validator = jsonschema.Draft7Validator(_json_schema(schema))
        problems += [f"{'.'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
                     for e in validator.iter_errors(answer)]
    for example in examples:
        problems += _missing_keys(example, answer, "(body)")
    return [f"{label}: {p}" for p in dict.fromkeys(problems)]


def _error_shape(status: int, content_type: str, body: bytes) -> list[str]:
    """Dify's error answer: {"code", "message", "status"} with the HTTP status."""
    if not content_type.startswith("application/json"):
        return [f"error answer of type {content_type!r}, not Dify's JSON error"]
    try:
        answer = json.loads(body)
    except ValueError:
        return ["error answer is not JSON"]
    if not (isinstance(answer, dict) and isinstance(answer.get("code"), str)
            and isinstance(answer.get("message"), str) and answer.get("status") == status):
        return [f"error answer {answer!r} is not Dify's {{code, message, status}}"]
    return []
