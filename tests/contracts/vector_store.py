"""The vector store contract: what every VectorStore must do (stated on the Protocol in
adapters/vector/base.py), as mixins a store's test class combines with its `store` fixture.

`VectorStoreContract` holds for every store: the in-memory one in
tests/unit/test_memory_vector_store.py, pgvector in tests/integration/test_vector_store.py,
Weaviate in tests/integration/test_weaviate_store.py (with a server). `PostgresLikeStoreChecks`
is what the in-memory store mirrors of pgvector beyond the contract.
"""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import pytest

from adapters.vector.base import CollectionNotFound, VectorDocument, VectorStore
from indexing.lexical import index_terms, query_terms

DIM = 4


def unit(*values: float) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def doc(
    chunk_id: str,
    text: str,
    vector: list[float] | None,
    document_id: str = "doc-1",
    **extra: Any,
) -> VectorDocument:
    metadata = {
        "dataset_id": "ds-1",
        "document_id": document_id,
        "segment_id": f"seg-{chunk_id}",
        **extra,
    }
    return VectorDocument(id=chunk_id, text=text, vector=vector, metadata=metadata)


# Four chunks around the x axis: a is on it, b/c lean away from it, d is orthogonal.
A = doc("a", "the quick brown fox jumps over the lazy dog", unit(1, 0, 0, 0), "doc-1", lang="en")
B = doc("b", "a fox den: fox cubs and fox tracks", unit(1, 1, 0, 0), "doc-1", lang="en")
C = doc("c", "ein schneller brauner Fuchs", unit(1, 0, 1, 1), "doc-2", lang="de")
D = doc("d", "completely unrelated text about tax returns", unit(0, 0, 0, 1), "doc-3", n=7)
ALL = [A, B, C, D]


CJK_TEXTS = {"zh-1": "我们的知识库支持向量检索和全文检索。",
             "zh-2": "今天的天气很好，适合出去散步。",
             "ja": "このシステムはベクトル検索に対応しています。",
             "ko": "이 시스템은 벡터 검색을 지원합니다."}


async def fill_cjk(store: VectorStore, collection: str) -> None:
    await store.create(collection, 0)
    await store.add_texts(collection, [
        VectorDocument(id=i, text=t, vector=None, terms=index_terms(t),
                       metadata={"document_id": i}) for i, t in CJK_TEXTS.items()])


class VectorStoreContract:
    """Behaviour every VectorStore must show (stated on the `VectorStore` Protocol).
    Subclasses provide the `store` fixture."""

    @pytest.fixture
    def collection(self) -> str:
        return uuid.uuid4().hex

    @pytest.fixture
    async def filled(self, store: VectorStore, collection: str) -> str:
        await store.create(collection, DIM)
        await store.add_texts(collection, ALL)
        return collection

    # -- writes -------------------------------------------------------------------------

    async def test_create_is_idempotent(self, store: VectorStore, collection: str) -> None:
        await store.create(collection, DIM)
        await store.create(collection, DIM)
        assert await store.count(collection) == 0

    async def test_upsert_twice_leaves_one_row(self, store: VectorStore, collection: str) -> None:
        await store.create(collection, DIM)
        await store.add_texts(collection, [A])
        changed = doc("a", "rewritten text about otters", unit(0, 1, 0, 0), "doc-9")
        await store.add_texts(collection, [changed])  # a redelivered / re-indexed chunk
        assert await store.count(collection) == 1
        assert await store.count(collection, document_id="doc-1") == 0
        assert await store.count(collection, document_id="doc-9") == 1

        hits = await store.search_by_vector(collection, unit(0, 1, 0, 0), top_k=5)
        assert [h.id for h in hits] == ["a"]
        assert hits[0].text == "rewritten text about otters"
        assert hits[0].metadata["document_id"] == "doc-9"

    async def test_duplicate_ids_in_one_batch_keep_the_last(
        self, store: VectorStore, collection: str
    ) -> None:
        await store.create(collection, DIM)
        first = doc("x", "first version", unit(1, 0, 0, 0))
        last = doc("x", "last version", unit(0, 1, 0, 0))
        await store.add_texts(collection, [first, last])
        assert await store.count(collection) == 1
        hits = await store.search_by_full_text(collection, "version", top_k=5)
        assert [h.text for h in hits] == ["last version"]

    async def test_empty_batch_is_fine(self, store: VectorStore, filled: str) -> None:
        await store.add_texts(filled, [])
        assert await store.count(filled) == len(ALL)

    async def test_count_by_document(self, store: VectorStore, filled: str) -> None:
        assert await store.count(filled) == 4
        assert await store.count(filled, document_id="doc-1") == 2
        assert await store.count(filled, document_id="doc-2") == 1
        assert await store.count(filled, document_id="nope") == 0

    # -- vector search ------------------------------------------------------------------

    async def test_search_by_vector_nearest_first(self, store: VectorStore, filled: str) -> None:
        hits = await store.search_by_vector(filled, unit(1, 0, 0, 0), top_k=4)
        assert [h.id for h in hits] == ["a", "b", "c", "d"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)  # identical vector
        assert hits[1].score == pytest.approx(1 / math.sqrt(2), abs=1e-4)
        assert hits[2].score == pytest.approx(1 / math.sqrt(3), abs=1e-4)
        assert hits[3].score == pytest.approx(0.0, abs=1e-5)  # orthogonal
        assert all(0.0 <= h.score <= 1.0 for h in hits)
        assert hits[0].text == A.text
        assert hits[0].metadata == A.metadata

    async def test_top_k_limits(self, store: VectorStore, filled: str) -> None:
        hits = await store.search_by_vector(filled, unit(1, 1, 0, 0), top_k=2)
        assert [h.id for h in hits] == ["b", "a"]

    async def test_score_threshold_filters(self, store: VectorStore, filled: str) -> None:
        hits = await store.search_by_vector(filled, unit(1, 0, 0, 0), top_k=4, score_threshold=0.65)
        assert [h.id for h in hits] == ["a", "b"]
        hits = await store.search_by_vector(filled, unit(1, 0, 0, 0), top_k=4, score_threshold=0.99)
        assert [h.id for h in hits] == ["a"]

    async def test_vector_search_metadata_filter(self, store: VectorStore, filled: str) -> None:
        query = unit(1, 0, 0, 0)
        hits = await store.search_by_vector(filled, query, top_k=4, where={"document_id": "doc-2"})
        assert [h.id for h in hits] == ["c"]

        hits = await store.search_by_vector(
            filled, query, top_k=4, where={"document_id": ["doc-2", "doc-3"]}
        )
        assert [h.id for h in hits] == ["c", "d"]

        # Every key must match; non-string values compare like JSON scalars.
        hits = await store.search_by_vector(
            filled, query, top_k=4, where={"document_id": "doc-1", "lang": "en"}
        )
        assert [h.id for h in hits] == ["a", "b"]
        hits = await store.search_by_vector(filled, query, top_k=4, where={"n": 7})
        assert [h.id for h in hits] == ["d"]
        assert await store.search_by_vector(filled, query, top_k=4, where={"document_id": []}) == []
        assert await store.search_by_vector(filled, query, top_k=4, where={"lang": "fr"}) == []

    async def test_filter_keys_and_values_are_not_sql(
        self, store: VectorStore, filled: str
    ) -> None:
        query = unit(1, 0, 0, 0)
        hostile = "x' OR '1'='1"
        assert await store.search_by_vector(filled, query, top_k=4, where={hostile: "a"}) == []
        assert (
            await store.search_by_vector(filled, query, top_k=4, where={"document_id": hostile})
            == []
        )
        assert await store.search_by_full_text(filled, "fox", top_k=4, where={hostile: "1"}) == []
        assert await store.count(filled) == 4

    async def test_filtered_search_finds_rare_matches(
        self, store: VectorStore, collection: str
    ) -> None:
        # A selective filter over many rows: an index that filters after its candidate
        # walk would return fewer than top_k here.
        rng = random.Random(7)
        dim = 8
        await store.create(collection, dim)
        docs = [
            doc(f"n{i}", f"noise {i}", unit(*(rng.uniform(0.5, 1.0) for _ in range(dim))), "bulk")
            for i in range(400)
        ]
        rare = [
            doc(f"r{i}", f"rare {i}", unit(*([-1.0] * (dim - 1)), 0.1 * i + 0.1), "rare")
            for i in range(3)
        ]
        await store.add_texts(collection, docs + rare)
        hits = await store.search_by_vector(
            collection, [1.0 / math.sqrt(dim)] * dim, top_k=3, where={"document_id": "rare"}
        )
        assert sorted(h.id for h in hits) == ["r0", "r1", "r2"]

    # -- full-text search ---------------------------------------------------------------

    async def test_full_text_finds_the_word(self, store: VectorStore, filled: str) -> None:
        hits = await store.search_by_full_text(filled, "Fuchs", top_k=5)
        assert [h.id for h in hits] == ["c"]
        assert 0.0 < hits[0].score <= 1.0
        assert hits[0].metadata == C.metadata
        assert await store.search_by_full_text(filled, "zebra", top_k=5) == []

    async def test_full_text_ranks_better_matches_higher(
        self, store: VectorStore, filled: str
    ) -> None:
        hits = await store.search_by_full_text(filled, "fox", top_k=5)
        assert [h.id for h in hits] == ["b", "a"]  # three foxes beat one
        assert 1.0 >= hits[0].score > hits[1].score > 0.0

        hits = await store.search_by_full_text(filled, "fox", top_k=1)
        assert [h.id for h in hits] == ["b"]

    async def test_full_text_metadata_filter(self, store: VectorStore, filled: str) -> None:
        hits = await store.search_by_full_text(
            filled, "fox", top_k=5, where={"segment_id": "seg-a"}
        )
        assert [h.id for h in hits] == ["a"]
        hits = await store.search_by_full_text(
            filled, "fox", top_k=5, where={"document_id": ["doc-2", "doc-3"]}
        )
        assert hits == []

    async def test_full_text_tolerates_odd_queries(self, store: VectorStore, filled: str) -> None:
        for query in ['"quick brown', "fox & | !", "-", "   ", "'; DROP TABLE x; --"]:
            hits = await store.search_by_full_text(filled, query, top_k=5)
            assert all(0.0 <= h.score <= 1.0 for h in hits)
        assert await store.count(filled) == 4

    async def test_full_text_searches_terms_of_cjk_text(self, store: VectorStore,
                                                        collection: str) -> None:
        # The raw text has no spaces between words: only the indexed terms make them words.
        await fill_cjk(store, collection)
        for query, expected in [("向量检索", ["zh-1"]), ("知识库", ["zh-1"]),
                                ("什么是全文检索？", ["zh-1"]), ("天气", ["zh-2"]),
                                ("ベクトル検索", ["ja"]), ("검색", ["ko"])]:
            hits = await store.search_by_full_text(collection, query_terms(query), top_k=5)
            assert [h.id for h in hits] == expected, query
            assert all(h.text == CJK_TEXTS[h.id] for h in hits)  # the text comes back as is

    async def test_keyword_only_collection(self, store: VectorStore, collection: str) -> None:
        await store.create(collection, 0)
        await store.add_texts(collection, [doc("k1", "keyword only chunk", None)])
        await store.add_texts(collection, [doc("k1", "keyword only chunk again", None)])
        assert await store.count(collection) == 1
        hits = await store.search_by_full_text(collection, "keyword", top_k=3)
        assert [(h.id, h.text) for h in hits] == [("k1", "keyword only chunk again")]

    # -- deletes ------------------------------------------------------------------------

    async def test_delete_by_ids(self, store: VectorStore, filled: str) -> None:
        await store.delete_by_ids(filled, ["a", "c", "missing"])
        await store.delete_by_ids(filled, [])
        assert await store.count(filled) == 2
        hits = await store.search_by_vector(filled, unit(1, 0, 0, 0), top_k=4)
        assert [h.id for h in hits] == ["b", "d"]

    async def test_delete_by_document_id(self, store: VectorStore, filled: str) -> None:
        await store.delete_by_document_id(filled, "doc-1")
        await store.delete_by_document_id(filled, "doc-1")  # idempotent
        assert await store.count(filled) == 2
        assert await store.count(filled, document_id="doc-1") == 0
        assert await store.search_by_full_text(filled, "fox", top_k=5) == []

    async def test_delete_by_document_id_before_an_attempt_keeps_newer_attempts(
        self, store: VectorStore, collection: str
    ) -> None:
        await store.create(collection, DIM)
        await store.add_texts(collection, [
            doc("legacy", "no attempt recorded", unit(1, 0, 0, 0)),
            doc("old", "attempt one", unit(0, 1, 0, 0), attempt=1),
            doc("new", "attempt two", unit(0, 0, 1, 0), attempt=2),
            doc("other", "another document", unit(0, 0, 0, 1), document_id="doc-2", attempt=1),
        ])
        # A late worker of attempt 2 clears only what came before it...
        await store.delete_by_document_id(collection, "doc-1", before_attempt=2)
        hits = await store.search_by_vector(collection, unit(0, 0, 1, 0), top_k=10)
        assert sorted(h.id for h in hits) == ["new", "other"]
        # ...and one of attempt 1, arriving later still, removes nothing of attempt 2.
        await store.delete_by_document_id(collection, "doc-1", before_attempt=1)
        assert await store.count(collection, document_id="doc-1") == 1

    async def test_delete_drops_the_collection(self, store: VectorStore, filled: str) -> None:
        await store.delete(filled)
        assert await store.count(filled) == 0
        assert await store.search_by_vector(filled, unit(1, 0, 0, 0), top_k=4) == []
        await store.delete(filled)  # idempotent
        # It can be created again from scratch.
        await store.create(filled, DIM)
        await store.add_texts(filled, [A])
        assert await store.count(filled) == 1

    async def test_missing_collection(self, store: VectorStore, collection: str) -> None:
        assert await store.search_by_vector(collection, unit(1, 0, 0, 0), top_k=3) == []
        assert await store.search_by_full_text(collection, "fox", top_k=3) == []
        assert await store.count(collection) == 0
        assert await store.count(collection, document_id="doc-1") == 0
        await store.delete_by_ids(collection, ["a"])
        await store.delete_by_document_id(collection, "doc-1")
        await store.delete(collection)

    async def test_unsafe_collection_names_are_rejected(self, store: VectorStore) -> None:
        for name in ['x"; DROP TABLE y; --', "../etc", "a b", "", "ü"]:
            with pytest.raises(ValueError):
                await store.create(name, DIM)
            with pytest.raises(ValueError):
                await store.search_by_vector(name, unit(1, 0, 0, 0), top_k=1)

    # -- what every batch and query is checked for (adapters/vector/base.py) ------------

    async def test_dimension_mismatch_is_an_error(self, store: VectorStore,
                                                  collection: str) -> None:
        await store.create(collection, DIM)
        with pytest.raises(ValueError):
            await store.create(collection, DIM + 1)
        with pytest.raises(ValueError):
            await store.create(uuid.uuid4().hex, -1)
        with pytest.raises(ValueError):
            await store.add_texts(collection, [doc("z", "too long", [1.0] * (DIM + 1))])
        with pytest.raises(ValueError):
            await store.add_texts(collection, [doc("z", "too short", [1.0] * (DIM - 1))])
        assert await store.count(collection) == 0

    async def test_non_finite_vectors_are_an_error(
        self, store: VectorStore, collection: str
    ) -> None:
        await store.create(collection, DIM)
        for bad in ([math.nan] * DIM, [1.0, math.inf, 0.0, 0.0], [-math.inf, 0.0, 0.0, 0.0], []):
            with pytest.raises(ValueError):
                # One bad vector spoils the batch: none of it is written.
                await store.add_texts(collection, [A, doc("z", "not finite", bad)])
            with pytest.raises(ValueError):
                await store.search_by_vector(collection, bad, top_k=1)
        assert await store.count(collection) == 0

    async def test_keyword_only_collection_takes_no_vectors(
        self, store: VectorStore, collection: str
    ) -> None:
        await store.create(collection, 0)
        assert await store.search_by_vector(collection, unit(1, 0, 0, 0), top_k=3) == []
        with pytest.raises(ValueError):
            await store.add_texts(collection, [A])
        assert await store.count(collection) == 0

    async def test_writing_to_a_missing_collection_fails(self, store: VectorStore,
                                                         collection: str) -> None:
        with pytest.raises(CollectionNotFound):
            await store.add_texts(collection, [A])

    async def test_nul_bytes_in_text_are_dropped(self, store: VectorStore,
                                                 collection: str) -> None:
        await store.create(collection, DIM)
        await store.add_texts(collection, [doc("z", "broken\x00pdf text", unit(1, 0, 0, 0))])
        hits = await store.search_by_full_text(collection, "brokenpdf", top_k=1)
        assert [h.text for h in hits] == ["brokenpdf text"]

    async def test_filter_values_must_be_json_scalars(
        self, store: VectorStore, filled: str
    ) -> None:
        query = unit(1, 0, 0, 0)
        for where in ({"n": None}, {"n": {"$gt": 1}}, {"document_id": ["doc-1", None]}):
            with pytest.raises(ValueError):
                await store.search_by_vector(filled, query, top_k=4, where=where)
            with pytest.raises(ValueError):
                await store.search_by_full_text(filled, "fox", top_k=4, where=where)

    async def test_filters_compare_the_text_forms_of_scalars(
        self, store: VectorStore, collection: str
    ) -> None:
        await store.create(collection, DIM)
        await store.add_texts(collection, [
            doc("yes", "flagged", unit(1, 0, 0, 0), ok=True, ratio=0.5, n=7),
            doc("no", "flagged", unit(0, 1, 0, 0), ok=False, ratio=1.5, n="7"),
        ])

        async def ids(where: dict[str, Any]) -> list[str]:
            hits = await store.search_by_vector(collection, unit(1, 1, 0, 0), top_k=4,
                                                where=where)
            words = await store.search_by_full_text(collection, "flagged", top_k=4, where=where)
            assert sorted(h.id for h in words) == sorted(h.id for h in hits)
            return sorted(h.id for h in hits)

        assert await ids({"ok": True}) == ["yes"]
        assert await ids({"ok": "false"}) == ["no"]  # true/false are JSON's words
        assert await ids({"ratio": [1.5, 2.5]}) == ["no"]
        # 7 and "7" have one text form, as `meta->>key` gives it
        assert await ids({"n": 7}) == ["no", "yes"]
        assert await ids({"n": "7", "ok": True}) == ["yes"]

    # -- collections and metadata ---------------------------------------------------------

    async def test_collections_are_isolated(self, store: VectorStore, collection: str) -> None:
        second = f"{collection}_2"
        try:
            await store.create(collection, DIM)
            await store.create(second, DIM)
            await store.add_texts(collection, ALL)
            await store.add_texts(second, [A])
            await store.delete_by_document_id(second, "doc-1")
            assert (await store.count(collection), await store.count(second)) == (4, 0)
            await store.delete(collection)
            assert await store.search_by_full_text(second, "fox", top_k=5) == []
            assert await store.count(collection) == 0
        finally:
            await store.delete(second)

    async def test_metadata_comes_back_as_json(
        self, store: VectorStore, collection: str
    ) -> None:
        # As from jsonb: non-JSON values as their text, and no aliasing of the caller's dict.
        await store.create(collection, DIM)
        marker = uuid.uuid4()
        written = doc("u", "uuid metadata", unit(1, 0, 0, 0), marker=marker)
        await store.add_texts(collection, [written])
        written.metadata["lang"] = "changed later"
        [hit] = await store.search_by_vector(collection, unit(1, 0, 0, 0), top_k=1)
        assert hit.metadata["marker"] == str(marker) and "lang" not in hit.metadata
        assert [h.id for h in await store.search_by_vector(
            collection, unit(1, 0, 0, 0), top_k=1, where={"marker": str(marker)})] == ["u"]


class PostgresLikeStoreChecks:
    """Behaviour of pgvector that the in-memory store mirrors (not the Postgres layout):
    Postgres' full-text query syntax, and collection names as quoted identifiers."""

    async def test_cjk_query_syntax_works_on_words(self, store: VectorStore,
                                                   collection: str) -> None:
        await fill_cjk(store, collection)
        for query, expected in [("知识库 -天气", ["zh-1"]), ("散步 -天气", []),
                                ("知识库 天气", []), ("知识库 or 天气", ["zh-1", "zh-2"])]:
            hits = await store.search_by_full_text(collection, query_terms(query), top_k=5)
            assert sorted(h.id for h in hits) == expected, query

    async def test_collection_names_keep_case(self, store: VectorStore) -> None:
        # Quoted identifiers: "Ab" and "ab" are different collections, not one.
        upper = f"Vector_index_{uuid.uuid4().hex}_Node"
        lower = upper.lower()
        await store.create(upper, DIM)
        await store.create(lower, DIM)
        await store.add_texts(upper, [A])
        assert (await store.count(upper), await store.count(lower)) == (1, 0)

    async def test_full_text_query_syntax(self, store: VectorStore, filled: str) -> None:
        # websearch_to_tsquery: all words (AND), "phrases" in a row, or, -excluded.
        async def ids(query: str) -> list[str]:
            return [h.id for h in await store.search_by_full_text(filled, query, top_k=5)]

        assert await ids("quick fox") == ["a"]
        assert await ids("QUICK   Fox!") == ["a"]
        assert await ids('"brown fox"') == ["a"]
        assert await ids('"fox brown"') == []
        assert await ids("fox or tax") == ["b", "a", "d"]
        assert await ids("fox -lazy") == ["b"]
        assert await ids("fox_den") == ["b"]  # '_' separates words, as in Postgres
        assert await ids("fox-den") == []  # a hyphenated word is also one word of its own
        assert await ids("-") == []
