"""A vector store in process memory, for the fast unit tier: the pgvector store's semantics
(the contract of tests/contracts/vector_store.py runs against both) without a server.

* Collections are created explicitly (`dimensions` 0 = keyword-only, as for economy
  datasets), isolated from each other, and named like pgvector's tables ([A-Za-z0-9_-],
  1-61 characters; anything else is a ValueError). Writing to a missing collection raises
  CollectionNotFound; reading, counting or deleting from one is an empty answer / no-op.
* Writes are upserts by id, checked and normalised by `upsert_batch` as in every store.
* Vector search: exact cosine similarity, clamped to [0, 1], nearest first (ties by id);
  `score_threshold` applies after `top_k`, as in pgvector (same result: hits are ordered).
* Full-text search mirrors `websearch_to_tsquery('simple', q)` matched against
  `to_tsvector('simple', coalesce(terms, text))` (VectorDocument.terms): lower-cased
  words, no stemming or stop words; every term must occur (AND), `"quoted words"` must
  occur in a row, `or` separates alternatives and `-word` excludes. The score is a simple
  term-match score: 0.1 per occurrence (the weight ts_rank_cd gives an unlabelled lexeme),
  averaged over the query's terms, mapped to [0, 1) with rank / (rank + 1) like
  ts_rank_cd's normalisation 32. It has the same shape as pgvector's scores, not their
  exact values beyond single-word queries.
* Metadata filters (`filter_terms`) compare text forms, as `meta->>key = value` does.

All state lives in the instance; a lock makes it safe to share with worker threads.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.vector.base import (
    CollectionNotFound,
    MetadataFilter,
    VectorDocument,
    VectorHit,
    checked_vector,
    clamp01,
    filter_terms,
    upsert_batch,
)

# The collection names pgvector accepts (this store mirrors it).
from adapters.vector.pgvector import check_collection_name

# Postgres' default text search parser, roughly: runs of letters and digits ('_' separates
# words); a hyphenated word is one lexeme followed by its parts ("e-mail": e-mail, e, mail).
_WORD_RE = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_UNLABELLED_WEIGHT = 0.1  # ts_rank_cd's weight for lexemes without a weight label ("D")


@dataclass(frozen=True)
class _Row:
    id: str
    text: str
    vector: tuple[float, ...] | None
    norm: float
    metadata: dict[str, Any]
    words: tuple[str, ...]  # the text's lexemes in order (for phrases and counts)


@dataclass
class _Collection:
    dimensions: int
    rows: dict[str, _Row] = field(default_factory=dict)


@dataclass(frozen=True)
class _Clause:
    words: tuple[str, ...]  # one word, or a phrase: consecutive words
    negated: bool


class InMemoryVectorStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collections: dict[str, _Collection] = {}

    # -- VectorStore --------------------------------------------------------------------

    async def create(self, collection: str, dimensions: int) -> None:
        check_collection_name(collection)
        if dimensions < 0:
            raise ValueError("dimensions must be >= 0 (0 = keyword-only collection)")
        with self._lock:
            existing = self._collections.get(collection)
            if existing is None:
                self._collections[collection] = _Collection(dimensions)
            elif existing.dimensions != dimensions:
                raise ValueError(
                    f"collection {collection!r} exists with {existing.dimensions} dimensions, "
                    f"not {dimensions}"
                )

    async def add_texts(self, collection: str, documents: Sequence[VectorDocument]) -> None:
        check_collection_name(collection)
        if not documents:
            return
        with self._lock:
            target = self._collections.get(collection)
            if target is None:
                raise CollectionNotFound(f"vector collection {collection!r} does not exist")
            rows = [_row(doc) for doc in upsert_batch(collection, documents, target.dimensions)]
            target.rows.update((row.id, row) for row in rows)

    async def delete_by_ids(self, collection: str, ids: Sequence[str]) -> None:
        check_collection_name(collection)
        with self._lock:
            target = self._collections.get(collection)
            if target is not None:
                for chunk_id in ids:
                    target.rows.pop(chunk_id, None)

    async def delete_by_document_id(self, collection: str, document_id: str,
                                    before_attempt: int | None = None) -> None:
        check_collection_name(collection)

        def doomed(row: _Row) -> bool:
            if _text_form(row.metadata.get("document_id")) != document_id:
                return False
            return before_attempt is None or int(row.metadata.get("attempt") or 0) < before_attempt

        with self._lock:
            target = self._collections.get(collection)
            if target is not None:
                target.rows = {i: row for i, row in target.rows.items() if not doomed(row)}

    async def delete(self, collection: str) -> None:
        check_collection_name(collection)
        with self._lock:
            self._collections.pop(collection, None)

    async def count(self, collection: str, document_id: str | None = None) -> int:
        check_collection_name(collection)
        with self._lock:
            target = self._collections.get(collection)
            if target is None:
                return 0
            if document_id is None:
                return len(target.rows)
            return sum(
                1 for row in target.rows.values()
                if _text_form(row.metadata.get("document_id")) == document_id
            )

    async def search_by_vector(
        self,
        collection: str,
        vector: Sequence[float],
        top_k: int,
        score_threshold: float = 0.0,
        where: MetadataFilter | None = None,
    ) -> list[VectorHit]:
        check_collection_name(collection)
        if top_k <= 0:
            return []
        query = checked_vector(vector)
        matches = _compile_filter(where)
        with self._lock:
            target = self._collections.get(collection)
            if target is None or target.dimensions == 0:
                return []  # missing, or keyword-only: nothing to compare with
            if len(query) != target.dimensions:
                raise ValueError(
                    f"vector has {len(query)} dimensions, collection has {target.dimensions}"
                )
            query_norm = math.sqrt(sum(x * x for x in query))
            scored: list[tuple[float, str, _Row]] = []
            for row in target.rows.values():
                if row.vector is None or not matches(row.metadata):
                    continue
                if row.norm == 0.0 or query_norm == 0.0:
                    distance = math.inf  # undefined (NaN in pgvector): sorts last
                else:
                    dot = sum(a * b for a, b in zip(row.vector, query, strict=True))
                    distance = 1.0 - dot / (row.norm * query_norm)
                scored.append((distance, row.id, row))
        scored.sort(key=lambda item: (item[0], item[1]))
        hits = []
        for distance, _, row in scored[:top_k]:
            score = 0.0 if math.isinf(distance) else clamp01(1.0 - distance)
            if score >= score_threshold:
                hits.append(_hit(row, score))
        return hits

    async def search_by_full_text(
        self,
        collection: str,
        query: str,
        top_k: int,
        where: MetadataFilter | None = None,
    ) -> list[VectorHit]:
        check_collection_name(collection)
        query = query.replace("\x00", "")
        if top_k <= 0 or not query.strip():
            return []
        matches = _compile_filter(where)
        alternatives = _parse_query(query)
        if not alternatives:
            return []  # no words at all ("-", punctuation): matches nothing
        with self._lock:
            target = self._collections.get(collection)
            if target is None:
                return []
            scored: list[tuple[float, str, _Row]] = []
            for row in target.rows.values():
                if not matches(row.metadata):
                    continue
                rank = _rank(row.words, alternatives)
                if rank is not None:
                    scored.append((rank, row.id, row))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [_hit(row, clamp01(rank / (rank + 1.0))) for rank, _, row in scored[:top_k]]

    # -- for tests: what a collection holds -----------------------------------------------

    def documents(self, collection: str) -> list[VectorDocument]:
        """Every entry of `collection` as stored, by id ([] if it does not exist)."""
        check_collection_name(collection)
        with self._lock:
            target = self._collections.get(collection)
            rows = [] if target is None else sorted(target.rows.values(), key=lambda r: r.id)
        return [
            VectorDocument(
                id=row.id,
                text=row.text,
                vector=None if row.vector is None else list(row.vector),
                metadata=json.loads(json.dumps(row.metadata)),
            )
            for row in rows
        ]

    def collections(self) -> dict[str, int]:
        """The existing collections and their dimensions (0 = keyword-only)."""
        with self._lock:
            return {name: c.dimensions for name, c in self._collections.items()}


# -- helpers ---------------------------------------------------------------------------


def _row(doc: VectorDocument) -> _Row:
    """A document as `upsert_batch` gave it (checked, in its JSON form) stored."""
    vector = None if doc.vector is None else tuple(doc.vector)
    return _Row(
        id=doc.id,
        text=doc.text,
        vector=vector,
        norm=0.0 if vector is None else math.sqrt(sum(x * x for x in vector)),
        metadata=doc.metadata,
        words=tuple(_words(doc.text if doc.terms is None else doc.terms)),
    )


def _words(text: str) -> list[str]:
    words: list[str] = []
    for word in _WORD_RE.findall(text.lower()):
        words.append(word)
        if "-" in word:
            words += word.split("-")
    return words


def _text_form(value: Any) -> str | None:
    """What `meta->>key` yields for a stored JSON value (None for JSON null / missing)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)



def _compile_filter(where: MetadataFilter | None) -> Callable[[dict[str, Any]], bool]:
    """A predicate over metadata; values are checked (ValueError) before any search."""
    wanted = [(key, frozenset(values)) for key, values in filter_terms(where)]

    def matches(metadata: dict[str, Any]) -> bool:
        return all(_text_form(metadata.get(key)) in values for key, values in wanted)

    return matches


def _parse_query(query: str) -> list[list[_Clause]]:
    """websearch_to_tsquery's syntax: alternatives (split by `or`) of AND-ed clauses."""
    # Quoted phrases (an unterminated quote runs to the end) or bare words.
    tokens = [(m.group(1), m.group(2)) for m in re.finditer(r'"([^"]*)"?|(\S+)', query)]
    alternatives: list[list[_Clause]] = [[]]
    for i, (phrase, bare) in enumerate(tokens):
        negated = False
        if bare is not None:
            # `or` between two terms separates alternatives; first or last, it is a word.
            if bare.lower() == "or" and alternatives[-1] and i + 1 < len(tokens):
                alternatives.append([])
                continue
            negated = bare.startswith("-")
            words = _words(bare[1:] if negated else bare)
        else:
            words = _words(phrase)
        if words:  # punctuation-only input is not a term
            alternatives[-1].append(_Clause(tuple(words), negated))
    return [clauses for clauses in alternatives if clauses]


def _occurrences(words: tuple[str, ...], phrase: tuple[str, ...]) -> int:
    n = len(phrase)
    return sum(1 for i in range(len(words) - n + 1) if words[i:i + n] == phrase)


def _rank(words: tuple[str, ...], alternatives: list[list[_Clause]]) -> float | None:
    """The best matching alternative's rank; None when no alternative matches."""
    best: float | None = None
    for clauses in alternatives:
        counts = [(c, _occurrences(words, c.words)) for c in clauses]
        if any((n > 0) == c.negated for c, n in counts):
            continue  # a required term is missing, or an excluded one is present
        positive = [n for c, n in counts if not c.negated]
        rank = _UNLABELLED_WEIGHT * sum(positive) / len(positive) if positive else 0.0
        best = rank if best is None else max(best, rank)
    return best


def _hit(row: _Row, score: float) -> VectorHit:
    return VectorHit(
        id=row.id, text=row.text, score=score, metadata=json.loads(json.dumps(row.metadata))
    )

