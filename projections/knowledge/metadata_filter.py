"""Metadata filtering for retrieval (Dify's `metadata_filtering_conditions`).

The conditions resolve to the set of a dataset's documents whose metadata match; retrieval
then searches only their chunks. A dataset holds few documents, so the conditions are
evaluated here over the candidate documents' values rather than compiled into SQL.

As in Dify's SQL, a document without a value for the field matches no condition except
`empty` (so `is not`, `not in` and `not contains` need a value to be present).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.knowledge import meta_queries as kmq
from schemas.errors import BadRequest
from schemas.knowledge.api import MetadataCondition, MetadataFilteringConditions
from schemas.knowledge.naming import BUILT_IN_METADATA_FIELDS, to_timestamp

# Dify's MetadataDataSource: how built-in `source` names a document's origin.
_SOURCE_NAMES = {"upload_file": "file_upload", "website_crawl": "website",
                 "notion_import": "notion"}

_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq, "≠": operator.ne, ">": operator.gt, "<": operator.lt,
    "≥": operator.ge, "≤": operator.le, "before": operator.lt, "after": operator.gt,
}


def parse_conditions(raw: Any) -> MetadataFilteringConditions | None:
    """None when there is nothing to filter by; a clear 400 when the shape is wrong."""
    if not raw:
        return None
    try:
        parsed = MetadataFilteringConditions.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest("metadata_filtering_conditions: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    return parsed if parsed.conditions else None


@dataclass(frozen=True)
class _Field:
    type: str
    value_of: Callable[[dict[str, Any]], Any]  # document row -> its value (None: none)


def _built_in(name: str) -> Callable[[dict[str, Any]], Any]:
    return {
        "document_name": lambda d: d["name"],
        "uploader": lambda d: d["uploader_name"],
        "upload_date": lambda d: int(d["created_at"].timestamp()),
        "last_update_date": lambda d: int(d["updated_at"].timestamp()),
        "source": lambda d: _SOURCE_NAMES.get(d["data_source_type"], d["data_source_type"]),
    }[name]


def _custom(field_id: str) -> Callable[[dict[str, Any]], Any]:
    return lambda d: (d["doc_metadata"] or {}).get(field_id)


async def _fields(engine: AsyncEngine, dataset: dict[str, Any]) -> dict[str, _Field]:
    fields = {f["name"]: _Field(f["type"], _custom(str(f["id"])))
              for f in await kmq.metadata_fields(engine, dataset["id"])}
    if dataset.get("built_in_field_enabled"):
        fields.update({name: _Field(kind, _built_in(name))
                       for name, kind in BUILT_IN_METADATA_FIELDS.items()})
    return fields


def _number(value: Any, kind: str) -> float | None:
    """A value as a number for comparing: Unix seconds for time fields."""
    if isinstance(value, bool | list) or value is None:
        return None
    if kind == "time":
        seconds = to_timestamp(value)
        return None if seconds is None else float(seconds)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    # Dify also takes "a,b" for in / not in
    return [part.strip() for part in str(value).split(",")] if value is not None else []


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _predicate(condition: MetadataCondition, field: _Field) -> Callable[[Any], bool]:
    """A test of one document value, with the condition's value checked up front."""
    op, wanted = condition.comparison_operator, condition.value
    if op == "empty":
        return lambda have: have is None or have == ""
    if op == "not empty":
        return lambda have: have is not None and have != ""
    if op in _NUMERIC or (op in ("is", "is not") and field.type != "string"):
        compare = _NUMERIC.get(op) or (operator.eq if op == "is" else operator.ne)
        want = _number(wanted, field.type)
        if want is None:
            raise BadRequest(f"Metadata condition on '{condition.name}' ({op}) needs a "
                             f"{'time' if field.type == 'time' else 'number'} value.")

        def numeric(have: Any) -> bool:
            number = None if have is None else _number(have, field.type)
            return number is not None and compare(number, want)
        return numeric
    if op in ("in", "not in"):
        options = _as_list(wanted)
        return lambda have: have is not None and (_text(have) in options) == (op == "in")
    if wanted is None or isinstance(wanted, list):
        raise BadRequest(f"Metadata condition on '{condition.name}' ({op}) needs a text value.")
    value = _text(wanted)
    test: Callable[[str], bool] = {
        "contains": lambda text: value in text,
        "not contains": lambda text: value not in text,
        "start with": lambda text: text.startswith(value),
        "end with": lambda text: text.endswith(value),
        "is": lambda text: text == value,
        "is not": lambda text: text != value,
    }[op]
    return lambda have: have is not None and test(_text(have))


async def matching_document_ids(engine: AsyncEngine, dataset: dict[str, Any],
                                conditions: MetadataFilteringConditions,
                                candidates: Sequence[str]) -> set[str]:
    """The candidate documents (ids as text) whose metadata satisfy the conditions."""
    fields = await _fields(engine, dataset)
    tests: list[tuple[_Field, Callable[[Any], bool]]] = []
    for condition in conditions.conditions or []:
        field = fields.get(condition.name)
        if field is None:
            hint = (" Built-in fields are disabled for this knowledge base."
                    if condition.name in BUILT_IN_METADATA_FIELDS else "")
            raise BadRequest(f"Unknown metadata field '{condition.name}' in "
                             f"metadata_filtering_conditions.{hint}")
        tests.append((field, _predicate(condition, field)))
    combine = any if conditions.logical_operator == "or" else all
    rows = await kmq.documents_for_filter(engine, UUID(str(dataset["id"])), candidates)
    return {str(row["id"]) for row in rows
            if combine(test(field.value_of(row)) for field, test in tests)}
