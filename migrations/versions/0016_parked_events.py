"""Parked events: a read-model apply that failed for good parks its event in that version
(`projections/parking.py`). The tracking row says which event of the aggregate is parked
(its later events wait behind it, visibly); `projection_parked` keeps every parked event
with its error, and how the operator resolved it (replayed, or skipped with a reason).

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE projection_tracking ADD COLUMN parked_version bigint")
    op.execute("""
        CREATE TABLE projection_parked (
            projection varchar(64) NOT NULL,
            aggregate_id uuid NOT NULL,
            aggregate_version bigint NOT NULL,
            aggregate_type varchar(255) NOT NULL,
            event_type varchar(255) NOT NULL,
            position bigint NOT NULL,
            error text NOT NULL,
            parked_at timestamptz NOT NULL,
            resolved_at timestamptz,
            resolution varchar(16),
            reason text,
            PRIMARY KEY (projection, aggregate_id, aggregate_version))
    """)


def downgrade() -> None:
    op.execute("DROP TABLE projection_parked")
    op.execute("ALTER TABLE projection_tracking DROP COLUMN parked_version")
