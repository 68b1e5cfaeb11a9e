"""Workspace keys: each workspace's key for its secrets at rest, sealed under SECRET_KEY,
beside the store (`projections.tables.workspace_keys`). No row: generation 0, the key every
secret was sealed with so far (derived from SECRET_KEY), so nothing stored changes.

Revision ID: 0024
Revises: 0023
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE workspace_keys (
            tenant_id uuid NOT NULL,
            generation integer NOT NULL,
            sealed_key text,
            state varchar(16) NOT NULL,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, generation)
        )""")


def downgrade() -> None:
    op.execute("DROP TABLE workspace_keys")
