"""The console read model converges under any interleaving of partitions: tombstones of
deleted aggregates (children applied after their parent's deletion stay out), hand edits'
share of their document's counts, segments indexed before their creation was applied, and
which segments were edited by hand.

Nothing to backfill: tombstones only matter for events still in flight, and the counts of
existing documents already include their hand edits (a later split replaces them anyway).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE console_v1.tombstones (
            id uuid PRIMARY KEY,
            kind varchar(32) NOT NULL,
            deleted_at timestamptz NOT NULL)
    """)
    op.execute("ALTER TABLE console_v1.segments"
               " ADD COLUMN edited boolean NOT NULL DEFAULT false")
    op.execute("""
        CREATE TABLE console_v1.segment_edits (
            segment_id uuid PRIMARY KEY,
            dataset_id uuid NOT NULL,
            document_id uuid NOT NULL,
            attempt integer NOT NULL,
            segments integer NOT NULL,
            word_count integer NOT NULL,
            tokens integer NOT NULL)
    """)
    op.execute("CREATE INDEX segment_edits_document_idx"
               " ON console_v1.segment_edits (document_id, attempt)")
    op.execute("CREATE INDEX segment_edits_dataset_idx ON console_v1.segment_edits (dataset_id)")
    op.execute("""
        CREATE TABLE console_v1.segments_indexed_early (
            segment_id uuid PRIMARY KEY,
            completed_at timestamptz NOT NULL)
    """)


def downgrade() -> None:
    for table in ("segments_indexed_early", "segment_edits", "tombstones"):
        op.execute(f"DROP TABLE console_v1.{table}")
    op.execute("ALTER TABLE console_v1.segments DROP COLUMN edited")
