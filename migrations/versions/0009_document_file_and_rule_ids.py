"""Documents show their file's id (`upload_file_id`, found again by the signed download
link) and their process rule's id; segments show who last edited them.

Existing rows are backfilled with the ids the v1 → v2 upcasters derive from the file's
storage key, so a rebuild from the event store gives the same values.

Revision ID: 0009
Revises: 0008
"""

import json

import sqlalchemy as sa
from alembic import op

from schemas.knowledge.naming import legacy_process_rule_id, legacy_upload_file_id

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE console_v1.documents ADD COLUMN process_rule_id uuid")
    op.execute("ALTER TABLE console_v1.segments ADD COLUMN updated_by uuid")
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT id, source, created_by, created_at FROM console_v1.documents")).mappings()
    for row in list(rows):
        source = row["source"]
        key = source["key"]
        source = {"id": str(legacy_upload_file_id(key)), "created_by": str(row["created_by"]),
                  "created_at": int(row["created_at"].timestamp()), **source}
        conn.execute(sa.text(
            "UPDATE console_v1.documents SET source = CAST(:source AS jsonb),"
            " process_rule_id = :rule WHERE id = :id"),
            {"source": json.dumps(source), "rule": legacy_process_rule_id(key), "id": row["id"]})
    op.execute("ALTER TABLE console_v1.documents ALTER COLUMN process_rule_id SET NOT NULL")
    op.execute("CREATE INDEX documents_source_file_idx"
               " ON console_v1.documents ((source->>'id'))")


def downgrade() -> None:
    op.execute("DROP INDEX console_v1.documents_source_file_idx")
    op.execute("ALTER TABLE console_v1.segments DROP COLUMN updated_by")
    op.execute("ALTER TABLE console_v1.documents DROP COLUMN process_rule_id")
