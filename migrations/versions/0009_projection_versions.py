"""Projection versions: which Postgres schema holds each version of a read model, which one
reads use, and which are still maintained (`eddy projections ...`).

The existing console_v1 becomes version 1 (layout 1) of the projection "console", active.
Its tracking rows keep their name: a version's tracking name is its schema.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE projection_versions (
            projection varchar(64) NOT NULL,
            version integer NOT NULL,
            schema_name varchar(64) NOT NULL UNIQUE,
            layout integer NOT NULL,
            state varchar(16) NOT NULL,
            active boolean NOT NULL DEFAULT false,
            built_position bigint,
            created_at timestamptz NOT NULL DEFAULT now(),
            built_at timestamptz,
            activated_at timestamptz,
            PRIMARY KEY (projection, version))
    """)
    # At most one active version per projection: a switch is one transaction.
    op.execute("CREATE UNIQUE INDEX projection_versions_active_idx"
               " ON projection_versions (projection) WHERE active")
    op.execute("INSERT INTO projection_versions"
               " (projection, version, schema_name, layout, state, active, activated_at)"
               " VALUES ('console', 1, 'console_v1', 1, 'live', true, now())")


def downgrade() -> None:
    op.execute("DROP TABLE projection_versions")
