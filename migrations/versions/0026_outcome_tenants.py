"""Command outcomes name the workspace that sent the command, so a command's status is read
only with that workspace's credentials (older outcomes, without it, are read by no one).

Revision ID: 0026
Revises: 0025
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE command_outcomes ADD COLUMN tenant_id uuid")


def downgrade() -> None:
    op.execute("ALTER TABLE command_outcomes DROP COLUMN tenant_id")
