"""Members and roles: pending (invited) accounts have no credentials yet, each account
remembers the workspace it works in, and a membership names who invited it and the
invitation's mail. Existing rows keep their meaning (NULLs: no inviter, oldest workspace).

Revision ID: 0021
Revises: 0020
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f'ALTER TABLE "{schema}".accounts ALTER COLUMN credentials_id DROP NOT NULL')
        op.execute(f'ALTER TABLE "{schema}".accounts ADD COLUMN current_workspace_id uuid')
        op.execute(f'ALTER TABLE "{schema}".workspace_members ADD COLUMN invited_by uuid')
        op.execute(f'ALTER TABLE "{schema}".workspace_members ADD COLUMN mail_id uuid')


def downgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f'ALTER TABLE "{schema}".workspace_members DROP COLUMN mail_id')
        op.execute(f'ALTER TABLE "{schema}".workspace_members DROP COLUMN invited_by')
        op.execute(f'ALTER TABLE "{schema}".accounts DROP COLUMN current_workspace_id')
