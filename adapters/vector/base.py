"""Vector stores behind Dify's interface (create, add_texts, delete_by_ids,
delete_by_document_id, search_by_vector, search_by_full_text).

A collection holds one dataset's chunks. Writes are upserts keyed by chunk id, so writing
the same chunk twice (a redelivered indexing job) leaves one vector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class VectorDocument:
    id: str  # the segment / chunk id
    text: str
    vector: list[float] | None  # None in keyword-only (economy) collections
    # always has dataset_id, document_id, segment_id; plus the document's metadata values
    metadata: dict[str, Any] = field(default_factory=dict)
    # What full-text search indexes instead of `text`: the text with its CJK runs cut into
    # space-separated words (indexing/lexical.py). None: the text itself.
    terms: str | None = None


@dataclass(frozen=True)
class VectorHit:
    id: str
    text: str
    score: float  # higher is better; cosine similarity in [0, 1] for vectors
    metadata: dict[str, Any] = field(default_factory=dict)


# Metadata filter: every key must match; a list value means "any of".
MetadataFilter = dict[str, Any]


def filter_value(value: Any) -> str:
    """A filter value's text form, as Postgres' `meta->>key` yields it for a JSON scalar, so
    every store compares like for like."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise ValueError(f"metadata filter values must be str, int, float or bool, not {value!r}")


def clamp01(value: float) -> float:
    # Float rounding gives 1.0000001 for identical vectors; opposite ones would go below 0.
    return min(1.0, max(0.0, value))


class VectorStore(Protocol):
    async def create(self, collection: str, dimensions: int) -> None:
        """Create the collection if missing (idempotent)."""
        ...

    async def add_texts(self, collection: str, documents: Sequence[VectorDocument]) -> None:
        """Upsert by id."""
        ...

    async def delete_by_ids(self, collection: str, ids: Sequence[str]) -> None: ...

    async def delete_by_document_id(self, collection: str, document_id: str,
                                    before_attempt: int | None = None) -> None:
        """The document's chunks; with `before_attempt`, only those an earlier indexing
        attempt wrote (metadata `attempt`, missing = 0), so a late worker of an old attempt
        never removes a newer attempt's chunks."""
        ...

    async def delete(self, collection: str) -> None:
        """Drop the whole collection (dataset deleted)."""
        ...

    async def count(self, collection: str, document_id: str | None = None) -> int: ...

    async def search_by_vector(self, collection: str, vector: Sequence[float], top_k: int,
                               score_threshold: float = 0.0,
                               where: MetadataFilter | None = None) -> list[VectorHit]: ...

    async def search_by_full_text(self, collection: str, query: str, top_k: int,
                                  where: MetadataFilter | None = None) -> list[VectorHit]:
        """Keyword search over the documents' `terms` (or text); scores normalised to
        [0, 1]. A CJK query must arrive cut into words the same way (lexical.query_terms)."""
        ...
