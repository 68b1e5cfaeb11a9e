"""Migration 0015 on a real Postgres: a pgvector collection made before collections were
named per embedding model is renamed, with its indexes, to its dataset's model's name, so
the dataset's semantic search keeps finding its chunks after the upgrade."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import psycopg

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.vector.base import VectorDocument
from adapters.vector.pgvector import SCHEMA, PgVectorStore, index_prefix
from migrations.runner import upgrade
from schemas.knowledge.naming import vector_collection
from tests.harness import migrated


async def test_0015_renames_old_collections_to_their_models_names(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
) -> None:
    database = fresh_database("mig")
    postgres.ensure_extension(database, "vector")
    url = migrated(postgres, database, "0014")

    dataset, orphan, tenant, owner = uuid4(), uuid4(), uuid4(), uuid4()
    old, orphan_collection = f"vec_{dataset.hex}", f"vec_{orphan.hex}"
    store = PgVectorStore(postgres.dsn(database), max_pool_size=2)
    try:
        for collection in (old, orphan_collection):
            await store.create(collection, 3)
            await store.add_texts(collection, [VectorDocument(
                id=str(uuid4()), text="on call rota", vector=[1.0, 0.0, 0.0],
                metadata={"dataset_id": str(dataset), "document_id": str(uuid4()),
                          "segment_id": str(uuid4())})])
        now = datetime.now(UTC)
        with psycopg.connect(postgres.dsn(database)) as conn:
            conn.execute(
                "INSERT INTO console_v1.datasets (id, tenant_id, name, description, permission,"
                " indexing_technique, embedding_model, embedding_model_provider,"
                " retrieval_model, created_by, created_at, updated_at,"
                " built_in_field_enabled) VALUES (%s, %s, 'handbook', '', 'only_me',"
                " 'high_quality', 'all-MiniLM-L6-v2', 'local', '{}', %s, %s, %s, false)",
                (dataset, tenant, owner, now, now))
            conn.commit()

        upgrade(url)

        new = vector_collection(dataset, "local", "all-MiniLM-L6-v2")
        hits = await store.search_by_vector(new, [1.0, 0.0, 0.0], top_k=3)
        assert [h.text for h in hits] == ["on call rota"]
        conn = await asyncpg.connect(postgres.dsn(database))
        try:
            tables = set(await conn.fetchval(
                "SELECT array_agg(tablename) FROM pg_tables WHERE schemaname = $1", SCHEMA))
            indexes = await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
                SCHEMA, f"c_{new}")
            before = len(indexes)
            await store.create(new, 3)  # as indexing does: finds everything in place
            after = await conn.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
                SCHEMA, f"c_{new}")
        finally:
            await conn.close()
        assert f"c_{old}" not in tables and f"c_{new}" in tables
        # a collection no dataset names (its dataset deleted) is left for cleanup as it was
        assert f"c_{orphan_collection}" in tables
        secondary = [r["indexname"] for r in indexes if not r["indexname"].endswith("_pkey")]
        assert secondary and all(i.startswith(index_prefix(new)) for i in secondary), indexes
        assert after == before, "the renamed indexes must be the ones create() expects"
    finally:
        await store.close()
