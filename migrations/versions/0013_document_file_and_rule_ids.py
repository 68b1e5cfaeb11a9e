"""Documents show their file's id (`upload_file_id`, found again by the signed download
link) and their process rule's id; segments show who last edited them.

Every version of the console read model gets the columns (they belong to every layout);
existing rows are backfilled with the ids the v1 → v2 upcasters derive from the file's
storage key, so a rebuild from the event store gives the same values. A rebuild copies the
columns and the index from the version it starts from.

Revision ID: 0013
Revises: 0012
"""

import json

import sqlalchemy as sa
from alembic import op

from migrations.read_models import read_model_schemas
from schemas.knowledge.naming import legacy_process_rule_id, legacy_upload_file_id

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _versions() -> list[str]:
    return read_model_schemas(op.get_bind(), "console")


def upgrade() -> None:
    conn = op.get_bind()
    for schema in _versions():
        op.execute(f"ALTER TABLE {schema}.documents ADD COLUMN process_rule_id uuid")
        op.execute(f"ALTER TABLE {schema}.segments ADD COLUMN updated_by uuid")
        rows = conn.execute(sa.text(
            f"SELECT id, source, created_by, created_at FROM {schema}.documents")).mappings()
        for row in list(rows):
            source = row["source"]
            key = source["key"]
            source = {"id": str(legacy_upload_file_id(key)),
                      "created_by": str(row["created_by"]),
                      "created_at": int(row["created_at"].timestamp()), **source}
            conn.execute(sa.text(
                f"UPDATE {schema}.documents SET source = CAST(:source AS jsonb),"
                " process_rule_id = :rule WHERE id = :id"),
                {"source": json.dumps(source), "rule": legacy_process_rule_id(key),
                 "id": row["id"]})
        op.execute(f"ALTER TABLE {schema}.documents ALTER COLUMN process_rule_id SET NOT NULL")
        # signed download links find their document by its file's id
        op.execute(f"CREATE INDEX documents_source_file_idx ON {schema}.documents"
                   " ((source->>'id'))")


def downgrade() -> None:
    for schema in _versions():
        op.execute(f"DROP INDEX {schema}.documents_source_file_idx")
        op.execute(f"ALTER TABLE {schema}.segments DROP COLUMN updated_by")
        op.execute(f"ALTER TABLE {schema}.documents DROP COLUMN process_rule_id")
