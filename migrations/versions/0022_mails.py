"""Mails and how their delivery stands (the members list shows each invitation's), in
every version of the console read model.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No mail events before this revision: each version is complete with the table empty.
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f"""
        CREATE TABLE "{schema}".mails (
            id uuid PRIMARY KEY,
            tenant_id uuid,
            template varchar(64) NOT NULL,
            recipient varchar(255) NOT NULL,
            status varchar(16) NOT NULL,
            error text,
            requested_at timestamptz NOT NULL,
            sent_at timestamptz)
        """)


def downgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f'DROP TABLE "{schema}".mails')
