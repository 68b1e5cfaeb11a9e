"""Names and ids of the knowledge context that the write side, the read side and the
workers must agree on: derived ids, storage prefixes, vector collections, built-in metadata.
No I/O: every layer may import this."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from schemas.base import EDDY_NAMESPACE

# Dify's built-in document metadata (BuiltInField): name -> type. Custom fields may not
# take these names; their values come from the document itself when enabled.
BUILT_IN_METADATA_FIELDS: dict[str, str] = {
    "document_name": "string", "uploader": "string", "upload_date": "time",
    "last_update_date": "time", "source": "string",
}
METADATA_TYPES = ("string", "number", "time")
HIERARCHICAL = "hierarchical_model"  # the doc_form of parent-child documents
TAG_TYPE = "knowledge"


def content_hash(text: str) -> str:
    """Dify's index_node_hash: tells whether a segment's vector is current."""
    return hashlib.sha256(text.encode()).hexdigest()


def keyword_collection(dataset_id: UUID) -> str:
    """The full-text collection holding an economy dataset's chunks."""
    return f"kw_{dataset_id.hex}"


def vector_collection(dataset_id: UUID, provider: str, model: str) -> str:
    """The collection holding a dataset's chunks embedded by one model. The model is part of
    the name, so vectors of two models never share a collection: switching a dataset's
    model fills a new one (a re-index) and drops the old."""
    space = hashlib.sha256(f"{provider}\n{model}".encode()).hexdigest()[:12]
    return f"vec_{dataset_id.hex}_{space}"


def document_prefix(dataset_id: UUID, document_id: UUID) -> str:
    """Every blob of a document (its upload and indexing artifacts) lives under this."""
    return f"datasets/{dataset_id}/{document_id}/"


def dataset_prefix(dataset_id: UUID) -> str:
    return f"datasets/{dataset_id}/"


def legacy_upload_file_id(source_key: str) -> UUID:
    """The id of a file recorded before files had ids (its storage key is unique)."""
    return uuid5(EDDY_NAMESPACE, f"upload-file:{source_key}")


def legacy_process_rule_id(source_key: str) -> UUID:
    """The id of a process rule recorded before rules had ids (with its document's file)."""
    return uuid5(EDDY_NAMESPACE, f"process-rule:{source_key}")


def segment_id_for(document_id: UUID, attempt: int, position: int) -> UUID:
    return uuid5(document_id, f"segment:{attempt}:{position}")


def child_id_for(segment_id: UUID, position: int) -> UUID:
    return uuid5(segment_id, f"child:{position}")


def tag_name_id(tenant_id: UUID | None, tag_type: str, name: str) -> UUID:
    """The TagName aggregate claimed by the one tag holding that name in a workspace."""
    return uuid5(EDDY_NAMESPACE, f"tag-name:{tenant_id}:{tag_type}:{name}")


def dataset_name_id(tenant_id: UUID | None, name: str) -> UUID:
    """The DatasetName aggregate claimed by the one dataset holding that name."""
    return uuid5(EDDY_NAMESPACE, f"dataset-name:{tenant_id}:{name}")


def as_number(value: str | int | float) -> int | float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


def to_timestamp(value: Any) -> int | None:
    """Unix seconds from a number or an ISO 8601 date / time (naive means UTC)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        number = as_number(value)
        if number is not None:
            return int(number)
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp())
    return None


# The indexing work topics (each also its consumer group): their backlog is what the queue
# monitor watches, named in its alert as Dify's Celery queue was
INDEXING_PRIORITY_TOPIC = "indexing.priority"
INDEXING_BULK_TOPIC = "indexing.bulk"
INDEXING_QUEUE_NAME = "dataset"
