"""Command outcomes list every aggregate (type, version) the command wrote, so a caller waits
for exactly those to be projected (read-your-writes per aggregate, not per global position).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # {"<aggregate id>": ["<aggregate type>", <version>], ...}; empty for older outcomes,
    # which the gateway then waits for by the primary aggregate.
    op.execute("ALTER TABLE command_outcomes ADD COLUMN aggregates jsonb NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE command_outcomes DROP COLUMN aggregates")
