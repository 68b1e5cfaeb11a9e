"""Vector stores behind Dify's interface (create, add_texts, delete_by_ids,
delete_by_document_id, search_by_vector, search_by_full_text).

What every store must do is stated on `VectorStore` and tested once, for all of them, by
tests/contracts/vector_store.py. The checks a store cannot leave to its server (a vector's
length and values, a filter's values) are made here, by `upsert_batch`, `checked_vector`
and `filter_terms`, which every store calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class CollectionNotFound(LookupError):
    """Writing to a collection that was never created (or was deleted)."""


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


class VectorStore(Protocol):
    """A set of named collections of chunks, each searchable by vector and by words.

    Collections: `create(name, dimensions)` makes one (idempotent; `dimensions` 0 makes a
    keyword-only collection, which takes no vectors); creating it again with other
    dimensions is a ValueError. Names are [A-Za-z0-9_-]; anything else is a ValueError.
    `delete` drops a collection with its chunks (idempotent); it can be created again.
    Writing to a missing collection raises CollectionNotFound; reading, counting or
    deleting chunks in one is an empty answer or nothing.

    Writes: `add_texts` upserts by chunk id, so writing a chunk again (a redelivered
    indexing job) leaves one, the last written; within one batch the last copy of an id
    wins. A batch is checked whole before anything is written (`upsert_batch`): every
    vector has the collection's dimensions and only finite values, else ValueError and
    nothing changes. Text loses NUL characters; metadata is kept in its JSON form (a UUID
    comes back as its string), never aliased to the caller's dict.

    Search: hits come best first, at most `top_k` of them, each with the chunk's text and
    metadata as written. Vector search scores cosine similarity clamped to [0, 1] (1 =
    same direction) and drops hits below `score_threshold`; the query vector must be
    non-empty and finite (ValueError). Full-text search scores each hit in [0, 1] on its
    own (not relative to the best hit), so a threshold keeps its meaning; a query without
    words finds nothing.

    Filters (`where`, on search): every key must match; a value matches the metadata
    value with the same text form (7 matches 7, True matches true); a list matches any of
    its values and an empty list matches nothing; keys and values are data, never query
    syntax. A value other than str, int, float or bool is a ValueError (`filter_terms`).

    Deletes: by ids or by document (`metadata["document_id"]`), idempotent, missing ids
    are ignored; `before_attempt` keeps what a newer indexing attempt wrote.
    """

    async def create(self, collection: str, dimensions: int) -> None:
        """Create the collection if missing (idempotent)."""
        ...

    async def add_texts(self, collection: str, documents: Sequence[VectorDocument]) -> None:
        """Upsert by id, the whole batch or nothing (see `upsert_batch`)."""
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


def checked_vector(vector: Sequence[float], dimensions: int | None = None) -> list[float]:
    """The vector as floats. ValueError unless it is non-empty and finite (NaN and
    infinities have no cosine) and, when `dimensions` is given, has that many values."""
    values = [float(x) for x in vector]
    if not values or not all(math.isfinite(x) for x in values):
        raise ValueError("vectors must be non-empty and finite")
    if dimensions is not None and len(values) != dimensions:
        raise ValueError(f"vector has {len(values)} dimensions, collection has {dimensions}")
    return values


def upsert_batch(collection: str, documents: Sequence[VectorDocument],
                 dimensions: int | None) -> list[VectorDocument]:
    """What a store writes for `add_texts(collection, documents)` into a collection of
    `dimensions` (0 = keyword-only; None = not known to the store, length unchecked).

    One document per id, the last copy winning (a store's single upsert statement cannot
    touch one row twice); vectors checked (`checked_vector`; none in a keyword-only
    collection); text and terms without NUL (Postgres text cannot hold it, and PDF
    extraction produces it); metadata in its JSON form. Raises ValueError before the
    store writes anything, so a bad batch changes nothing.
    """
    unique = {doc.id: doc for doc in documents}.values()
    if dimensions == 0 and any(doc.vector is not None for doc in unique):
        raise ValueError(f"collection {collection!r} is keyword-only: no vectors")
    return [
        VectorDocument(
            id=doc.id,
            text=doc.text.replace("\x00", ""),
            vector=None if doc.vector is None else checked_vector(doc.vector, dimensions),
            metadata=json.loads(json.dumps(doc.metadata, default=str)),
            terms=None if doc.terms is None else doc.terms.replace("\x00", ""),
        )
        for doc in unique
    ]


def filter_terms(where: MetadataFilter | None) -> list[tuple[str, list[str]]]:
    """`where` as (key, the text forms its value may have) pairs, checked before any search:
    a list means any of its values (an empty one: nothing matches), a scalar itself."""
    terms: list[tuple[str, list[str]]] = []
    for key, value in (where or {}).items():
        values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        terms.append((str(key), [filter_value(v) for v in values]))
    return terms


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
