"""pgvector store: one table per collection in schema `vectors` (Dify's pgvector layout).

Table `vectors."c_<collection>"`:
    id        text PRIMARY KEY          -- chunk / segment id, the upsert key
    text      text NOT NULL
    meta      jsonb NOT NULL            -- dataset_id, document_id, segment_id, doc metadata
    embedding vector(dim) NULL          -- only when the collection has dimensions > 0
    terms     text NULL                 -- the words to index when they are not the text's
                                           own (CJK cut into words); NULL = text
    tsv       tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(terms, text)))

Indexes: HNSW (vector_cosine_ops) on embedding, GIN on tsv, btree on meta->>'document_id'.

Scores:
* vector search: cosine similarity = 1 - (embedding <=> query), clamped to [0, 1].
* full-text search: ts_rank_cd(tsv, query, 32). Normalisation flag 32 is rank / (rank + 1),
  which maps to [0, 1) per hit, independent of the other hits. Dividing by the best rank
  in the result set was rejected: it always gives the top hit 1.0, so a weak match to an
  odd query would look as good as an exact one and score thresholds would be meaningless.

Collection names are restricted to [A-Za-z0-9_-] (uuids, hex, Dify-style
"Vector_index_<id>_Node") and always quoted, so they can never inject SQL; every value,
including metadata filter keys, is a bind parameter.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import asyncpg

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

SCHEMA = "vectors"
# 63-byte identifier limit minus the "c_" prefix: longer names would be truncated silently
# by Postgres and could collide.
_COLLECTION_RE = re.compile(r"[A-Za-z0-9_-]{1,61}")
# pgvector's HNSW index supports at most 2000 dimensions; above that we scan exactly.
_HNSW_MAX_DIMENSIONS = 2000
_TEXT_CONFIG = "simple"  # language-agnostic: no stemming or stop words, like Dify's pgvector
_TSV = (f"tsv tsvector GENERATED ALWAYS AS (to_tsvector('{_TEXT_CONFIG}', coalesce(terms, text)))"
        " STORED")


class PgVectorStore:
    def __init__(self, dsn: str, *, min_pool_size: int = 1, max_pool_size: int = 10) -> None:
        self._dsn = dsn
        self._min_pool_size = min_pool_size
        self._max_pool_size = max_pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._iterative_scan: bool | None = None  # pgvector >= 0.8, probed once

    async def close(self) -> None:
        async with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- VectorStore --------------------------------------------------------------------

    async def create(self, collection: str, dimensions: int) -> None:
        table = _table(collection)
        if dimensions < 0:
            raise ValueError("dimensions must be >= 0 (0 = keyword-only collection)")
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            # Serialise creators: CREATE SCHEMA/TABLE/EXTENSION ... IF NOT EXISTS is not
            # race-free in Postgres (two sessions can both pass the check and one then fails
            # on a unique index). Creating collections is rare, so one lock for all is fine.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('eddy:vectors:create'))")
            existing = await _embedding_dimensions(conn, collection)
            index = index_prefix(collection)
            if existing is not None:
                if existing != dimensions:
                    raise ValueError(
                        f"collection {collection!r} exists with {existing} dimensions, "
                        f"not {dimensions}"
                    )
                await _add_terms_column(conn, collection, table, index)
                return
            if dimensions > 0:
                await _ensure_vector_extension(conn)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            embedding = f"embedding vector({dimensions}) NULL," if dimensions > 0 else ""
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {table} (
                    id text PRIMARY KEY,
                    text text NOT NULL,
                    meta jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                    {embedding}
                    terms text NULL,
                    {_TSV}
                )"""
            )
            await conn.execute(f"CREATE INDEX IF NOT EXISTS {index}_tsv ON {table} USING gin (tsv)")
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {index}_doc ON {table} ((meta->>'document_id'))"
            )
            if 0 < dimensions <= _HNSW_MAX_DIMENSIONS:
                await conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {index}_hnsw ON {table} "
                    "USING hnsw (embedding vector_cosine_ops)"
                )

    async def add_texts(self, collection: str, documents: Sequence[VectorDocument]) -> None:
        table = _table(collection)
        if not documents:
            return
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            dimensions = await _embedding_dimensions(conn, collection)
            if dimensions is None:
                raise CollectionNotFound(f"vector collection {collection!r} does not exist")
            unique = upsert_batch(collection, documents, dimensions)
            ids = [doc.id for doc in unique]
            texts = [doc.text for doc in unique]
            metas = [json.dumps(doc.metadata) for doc in unique]
            terms = [doc.terms for doc in unique]
            if dimensions == 0:
                await conn.execute(
                    f"""INSERT INTO {table} (id, text, meta, terms)
                        SELECT i, t, m::jsonb, w
                        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                            AS u(i, t, m, w)
                        ON CONFLICT (id) DO UPDATE
                            SET text = EXCLUDED.text, meta = EXCLUDED.meta,
                                terms = EXCLUDED.terms""",
                    ids,
                    texts,
                    metas,
                    terms,
                )
                return
            vectors = [None if doc.vector is None else _vector_literal(doc.vector)
                       for doc in unique]
            # Vectors travel as pgvector text literals and are cast server-side: no codec
            # to register, and it works whichever schema the extension lives in.
            await conn.execute(
                f"""INSERT INTO {table} (id, text, meta, embedding, terms)
                    SELECT i, t, m::jsonb, e::vector, w
                    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                        AS u(i, t, m, e, w)
                    ON CONFLICT (id) DO UPDATE
                        SET text = EXCLUDED.text, meta = EXCLUDED.meta,
                            embedding = EXCLUDED.embedding, terms = EXCLUDED.terms""",
                ids,
                texts,
                metas,
                vectors,
                terms,
            )

    async def delete_by_ids(self, collection: str, ids: Sequence[str]) -> None:
        table = _table(collection)
        if not ids:
            return
        await self._execute_if_exists(f"DELETE FROM {table} WHERE id = ANY($1::text[])", list(ids))

    async def delete_by_document_id(self, collection: str, document_id: str,
                                    before_attempt: int | None = None) -> None:
        table = _table(collection)
        if before_attempt is None:
            await self._execute_if_exists(
                f"DELETE FROM {table} WHERE meta->>'document_id' = $1", document_id)
            return
        await self._execute_if_exists(
            f"DELETE FROM {table} WHERE meta->>'document_id' = $1"
            " AND coalesce((meta->>'attempt')::int, 0) < $2", document_id, before_attempt)

    async def delete(self, collection: str) -> None:
        table = _table(collection)
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")

    async def count(self, collection: str, document_id: str | None = None) -> int:
        table = _table(collection)
        pool = await self._get_pool()
        try:
            if document_id is None:
                value = await pool.fetchval(f"SELECT count(*) FROM {table}")
            else:
                value = await pool.fetchval(
                    f"SELECT count(*) FROM {table} WHERE meta->>'document_id' = $1", document_id
                )
        except asyncpg.UndefinedTableError:
            return 0
        return int(value)

    async def search_by_vector(
        self,
        collection: str,
        vector: Sequence[float],
        top_k: int,
        score_threshold: float = 0.0,
        where: MetadataFilter | None = None,
    ) -> list[VectorHit]:
        table = _table(collection)
        if top_k <= 0:
            return []
        params: list[Any] = [_vector_literal(checked_vector(vector)), top_k]
        conditions = ["embedding IS NOT NULL", *_filter_sql(where, params)]
        sql = (
            f"SELECT id, text, meta::text AS meta, embedding <=> $1::vector AS distance "
            f"FROM {table} WHERE {' AND '.join(conditions)} "
            f"ORDER BY embedding <=> $1::vector LIMIT $2"
        )
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                if where and await self._supports_iterative_scan(conn):
                    # HNSW filters after the graph walk (ef_search candidates); a selective
                    # metadata filter could starve the result. Iterative scans keep walking
                    # until top_k rows pass, still in exact distance order.
                    await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
                rows = await conn.fetch(sql, *params)
        except (
            asyncpg.UndefinedTableError,  # missing collection
            asyncpg.UndefinedColumnError,  # keyword-only collection: no embedding column
            asyncpg.UndefinedObjectError,  # no pgvector at all, so no vector collections
        ):
            return []
        hits = []
        # Threshold after LIMIT, as in Dify: the index delivers the top_k nearest, then weak
        # ones are dropped. Same result as filtering first, since order is by distance.
        for row in rows:
            score = clamp01(1.0 - float(row["distance"]))
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
        table = _table(collection)
        query = query.replace("\x00", "")
        if top_k <= 0 or not query.strip():
            return []
        pool = await self._get_pool()
        for parser in ("websearch_to_tsquery", "plainto_tsquery"):
            params: list[Any] = [query, top_k]
            conditions = ["tsv @@ q.query", *_filter_sql(where, params)]
            # websearch_to_tsquery never raises on user input ("quoted phrases", or, -word);
            # plainto_tsquery is the fallback for servers older than PostgreSQL 11.
            sql = (
                f"SELECT id, text, meta::text AS meta, "
                f"ts_rank_cd(tsv, q.query, 32) AS rank "
                f"FROM {table}, {parser}('{_TEXT_CONFIG}', $1) AS q(query) "
                f"WHERE {' AND '.join(conditions)} "
                f"ORDER BY rank DESC, id LIMIT $2"
            )
            try:
                rows = await pool.fetch(sql, *params)
            except asyncpg.UndefinedTableError:
                return []
            except asyncpg.UndefinedFunctionError:
                continue
            return [_hit(row, clamp01(float(row["rank"]))) for row in rows]
        raise RuntimeError("the server has neither websearch_to_tsquery nor plainto_tsquery")

    # -- internals ----------------------------------------------------------------------

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=self._min_pool_size, max_size=self._max_pool_size
                )
            return self._pool

    async def _execute_if_exists(self, sql: str, *args: Any) -> None:
        pool = await self._get_pool()
        try:
            await pool.execute(sql, *args)
        except asyncpg.UndefinedTableError:
            pass  # deleting from a missing collection is a no-op

    async def _supports_iterative_scan(self, conn: asyncpg.Connection) -> bool:
        if self._iterative_scan is None:
            version = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
            parts = tuple(int(p) for p in re.findall(r"\d+", str(version or "0"))[:2])
            self._iterative_scan = parts >= (0, 8)
        return self._iterative_scan


def check_collection_name(collection: str) -> None:
    """ValueError for names that are unsafe or too long for a table name."""
    if not isinstance(collection, str) or not _COLLECTION_RE.fullmatch(collection):
        raise ValueError(f"invalid collection name {collection!r}: use 1-61 of [A-Za-z0-9_-]")


def _table(collection: str) -> str:
    """The quoted, schema-qualified table of `collection`; ValueError for unsafe names."""
    check_collection_name(collection)
    return f'{SCHEMA}."c_{collection}"'


def index_prefix(collection: str) -> str:
    # Index names share the 63-byte limit with a suffix; a digest keeps them short and
    # unique per collection (case included, since the table names are quoted).
    return "ix_" + hashlib.sha1(collection.encode()).hexdigest()[:24]


async def _embedding_dimensions(conn: asyncpg.Connection, collection: str) -> int | None:
    """None if the collection's table is missing, 0 if it has no embedding column."""
    row = await conn.fetchrow(
        """SELECT c.oid, a.atttypmod
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attribute a
             ON a.attrelid = c.oid AND a.attname = 'embedding' AND NOT a.attisdropped
           WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'""",
        SCHEMA,
        f"c_{collection}",
    )
    if row is None:
        return None
    # pgvector stores the dimension count as the column's type modifier.
    return 0 if row["atttypmod"] is None else max(int(row["atttypmod"]), 0)


async def _add_terms_column(conn: asyncpg.Connection, collection: str, table: str,
                            index: str) -> None:
    """Tables created before `terms` existed index `text` only: add the column and index
    coalesce(terms, text) instead. Their rows keep the same words (terms is NULL) until the
    next write of each row."""
    if await conn.fetchval(
        "SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = 'terms' AND NOT a.attisdropped",
        SCHEMA, f"c_{collection}",
    ):
        return
    await conn.execute(f"ALTER TABLE {table} ADD COLUMN terms text NULL, DROP COLUMN tsv")
    await conn.execute(f"ALTER TABLE {table} ADD COLUMN {_TSV}")
    await conn.execute(f"CREATE INDEX IF NOT EXISTS {index}_tsv ON {table} USING gin (tsv)")


async def _ensure_vector_extension(conn: asyncpg.Connection) -> None:
    if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'"):
        return
    # Needs CREATE privilege on the database; in production the migration role or a DBA
    # installs it, so only try when it is missing.
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def _vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form of a vector `checked_vector` let through."""
    return "[" + ",".join(repr(x) for x in vector) + "]"


def _filter_sql(where: MetadataFilter | None, params: list[Any]) -> list[str]:
    """SQL conditions for `where`, appending their bind values to `params`."""
    conditions: list[str] = []
    for key, values in filter_terms(where):
        params.append(key)
        key_ref = f"(${len(params)}::text)"  # typed: ->> also has an integer form
        params.append(values)
        conditions.append(f"meta->>{key_ref} = ANY(${len(params)}::text[])")
    return conditions


def _hit(row: asyncpg.Record, score: float) -> VectorHit:
    return VectorHit(id=row["id"], text=row["text"], score=score, metadata=json.loads(row["meta"]))

