"""Segment hit counts beside the segments (SegmentsHit batches add to them); the segments'
own hit_count column, never written, goes.

Done in every existing version of the console read model, not as a new layout: the table
holds the effects of an event type that has no history before this revision, so each
version, however old, is already complete with it empty. A rebuild creates it like any
other table.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _versions() -> list[str]:
    return read_model_schemas(op.get_bind(), "console")


def upgrade() -> None:
    for schema in _versions():
        op.execute(f"""
            CREATE TABLE "{schema}".segment_hits (
                segment_id uuid PRIMARY KEY,
                dataset_id uuid NOT NULL,
                document_id uuid NOT NULL,
                hit_count integer NOT NULL)
        """)
        op.execute(f'CREATE INDEX ON "{schema}".segment_hits (dataset_id)')
        op.execute(f'CREATE INDEX ON "{schema}".segment_hits (document_id)')
        op.execute(f'ALTER TABLE "{schema}".segments DROP COLUMN hit_count')


def downgrade() -> None:
    for schema in _versions():
        op.execute(f'ALTER TABLE "{schema}".segments'
                   " ADD COLUMN hit_count integer NOT NULL DEFAULT 0")
        op.execute(f'DROP TABLE "{schema}".segment_hits')
