"""A dataset's vectors live in one collection per embedding model (`vec_<dataset>_<model
digest>`, `schemas.knowledge.naming.vector_collection`). Collections made before that were
named `vec_<dataset>`: on the pgvector store they are renamed, with their indexes, to the
name of the model their dataset records, so existing datasets keep answering without a
reindex. (A Weaviate store's old collections need a reindex: see the README.)

Revision ID: 0015
Revises: 0014
"""

import re
from uuid import UUID

import sqlalchemy as sa
from alembic import op

from adapters.vector.pgvector import SCHEMA, index_prefix
from migrations.read_models import read_model_schemas
from schemas.knowledge.naming import vector_collection

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_LEGACY_TABLE = re.compile(r"c_vec_([0-9a-f]{32})")


def _renames(conn: sa.Connection) -> list[tuple[str, str]]:
    """(old collection, new collection) of each legacy table whose dataset names a model."""
    if conn.execute(sa.text("SELECT to_regnamespace(:s)"), {"s": SCHEMA}).scalar() is None:
        return []  # the pgvector store was never used here
    schemas = read_model_schemas(conn, "console")
    if not schemas:
        return []
    tables = conn.execute(sa.text(
        "SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": SCHEMA}).scalars()
    legacy = {UUID(m.group(1)): m.group(0)[2:]
              for m in map(_LEGACY_TABLE.fullmatch, tables) if m}
    if not legacy:
        return []
    models = conn.execute(sa.text(
        f"SELECT id, embedding_model_provider, embedding_model FROM {schemas[0]}.datasets"
        " WHERE id = ANY(:ids)"), {"ids": list(legacy)}).all()
    return [(legacy[dataset], vector_collection(dataset, provider, model))
            for dataset, provider, model in models if provider and model]


def _rename(conn: sa.Connection, old: str, new: str) -> None:
    old_prefix, new_prefix = index_prefix(old), index_prefix(new)
    indexes = conn.execute(sa.text(
        "SELECT indexname FROM pg_indexes WHERE schemaname = :s AND tablename = :t"),
        {"s": SCHEMA, "t": f"c_{old}"}).scalars().all()
    for index in indexes:
        if index.startswith(old_prefix):
            op.execute(f'ALTER INDEX {SCHEMA}."{index}" RENAME TO '
                       f'"{new_prefix}{index[len(old_prefix):]}"')
    op.execute(f'ALTER TABLE {SCHEMA}."c_{old}" RENAME TO "c_{new}"')


def upgrade() -> None:
    conn = op.get_bind()
    for old, new in _renames(conn):
        _rename(conn, old, new)


def downgrade() -> None:
    # The per-model names stay: code of 0014 and before would not read them, but renaming
    # back could merge two models' collections of one dataset into one name.
    pass
