"""The vector store contract (tests/contracts/vector_store.py) on pgvector, on the embedded
Postgres, and what pgvector adds to it: its table layout, upgrades and index use."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.vector.base import VectorDocument
from adapters.vector.pgvector import PgVectorStore
from indexing.lexical import index_terms, query_terms
from tests.contracts.vector_store import (
    DIM,
    A,
    PostgresLikeStoreChecks,
    VectorStoreContract,
    doc,
    unit,
)


class TestPgVectorStore(PostgresLikeStoreChecks, VectorStoreContract):
    @pytest.fixture
    def database(self, postgres: EmbeddedPostgres, fresh_database: Callable[..., str]) -> str:
        name = fresh_database("vec")
        postgres.ensure_extension(name, "vector")
        return name

    @pytest.fixture
    async def store(
        self, postgres: EmbeddedPostgres, database: str
    ) -> AsyncIterator[PgVectorStore]:
        store = PgVectorStore(postgres.dsn(database), max_pool_size=4)
        try:
            yield store
        finally:
            await store.close()

    async def test_layout(
        self, store: PgVectorStore, filled: str, postgres: EmbeddedPostgres, database: str
    ) -> None:
        conn = await asyncpg.connect(postgres.dsn(database))
        try:
            table = f"c_{filled}"
            columns = {
                r["attname"]: r["type"]
                for r in await conn.fetch(
                    "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
                    "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
                    f'vectors."{table}"',
                )
            }
            assert columns == {
                "id": "text",
                "text": "text",
                "meta": "jsonb",
                "embedding": f"vector({DIM})",
                "terms": "text",
                "tsv": "tsvector",
            }
            indexes = " ".join(
                r["indexdef"]
                for r in await conn.fetch(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'vectors' "
                    "AND tablename = $1",
                    table,
                )
            )
            assert "USING hnsw (embedding vector_cosine_ops)" in indexes
            assert "USING gin (tsv)" in indexes
        finally:
            await conn.close()

    async def test_keyword_only_collection_has_no_vector_column(
        self, store: PgVectorStore, collection: str, postgres: EmbeddedPostgres, database: str
    ) -> None:
        await store.create(collection, 0)
        conn = await asyncpg.connect(postgres.dsn(database))
        try:
            has_embedding = await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'vectors' "
                "AND table_name = $1 AND column_name = 'embedding'",
                f"c_{collection}",
            )
        finally:
            await conn.close()
        assert has_embedding == 0

    async def test_tables_from_before_terms_are_upgraded(
        self, store: PgVectorStore, collection: str, postgres: EmbeddedPostgres, database: str
    ) -> None:
        conn = await asyncpg.connect(postgres.dsn(database))
        try:  # the layout collections had before `terms`, with one row in it
            await conn.execute("CREATE SCHEMA IF NOT EXISTS vectors")
            await conn.execute(
                f"""CREATE TABLE vectors."c_{collection}" (id text PRIMARY KEY,
                    text text NOT NULL, meta jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                    tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED)""")
            await conn.execute(f"""INSERT INTO vectors."c_{collection}" (id, text, meta)
                                   VALUES ('old', 'an old fox', '{{}}')""")
        finally:
            await conn.close()
        await store.create(collection, 0)
        text = "新的知识库"
        await store.add_texts(collection, [VectorDocument(id="new", text=text, vector=None,
                                                          terms=index_terms(text))])
        assert [h.id for h in await store.search_by_full_text(collection, "fox", 5)] == ["old"]
        hits = await store.search_by_full_text(collection, query_terms("知识库"), 5)
        assert [h.id for h in hits] == ["new"]

    async def test_concurrent_creates(self, store: PgVectorStore) -> None:
        # Same and different collections at once: the schema and tables must not race.
        names = [uuid.uuid4().hex for _ in range(3)]
        await asyncio.gather(*(store.create(n, DIM) for n in names for _ in range(2)))
        for name in names:
            assert await store.count(name) == 0

    async def test_filtered_hnsw_scan_keeps_walking(
        self, postgres: EmbeddedPostgres, database: str, collection: str
    ) -> None:
        # The contract test above is answered from a small table by a plain scan; force
        # the HNSW index here (no seq scans, filter key without its own index) so the
        # iterative scan is what delivers the rare rows past the ef_search candidates.
        store = PgVectorStore(postgres.dsn(database) + "?enable_seqscan=off")
        try:
            rng = random.Random(11)
            dim = 8
            await store.create(collection, dim)
            bulk = [
                doc(f"n{i}", "noise", unit(*(rng.uniform(0.5, 1.0) for _ in range(dim))), tag="b")
                for i in range(300)
            ]
            rare = [
                doc(f"r{i}", "rare", unit(*([-1.0] * (dim - 1)), 0.1 * i + 0.1), tag="r")
                for i in range(3)
            ]
            await store.add_texts(collection, bulk + rare)
            hits = await store.search_by_vector(
                collection, [1.0] * dim, top_k=3, where={"tag": "r"}
            )
            assert sorted(h.id for h in hits) == ["r0", "r1", "r2"]
        finally:
            await store.close()

    async def test_creates_extension_when_missing(
        self, postgres: EmbeddedPostgres, fresh_database: Callable[..., str]
    ) -> None:
        store = PgVectorStore(postgres.dsn(fresh_database("vecnoext")))
        try:
            name = uuid.uuid4().hex
            await store.create(name, DIM)
            await store.add_texts(name, [A])
            hits = await store.search_by_vector(name, unit(1, 0, 0, 0), top_k=1)
            assert [h.id for h in hits] == ["a"]
        finally:
            await store.close()
