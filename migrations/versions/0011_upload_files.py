"""Files end users upload to an app for its messages (Service API /files/upload), in every
version of the console read model.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _versions() -> list[str]:
    """Every version of the console read model gets the table (no history before this
    revision: each version is complete with it empty)."""
    return read_model_schemas(op.get_bind(), "console")


def upgrade() -> None:
    for schema in _versions():
        op.execute(f"""
        CREATE TABLE "{schema}".upload_files (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            app_id uuid NOT NULL,
            end_user_id uuid NOT NULL,
            name varchar(255) NOT NULL,
            size integer NOT NULL,
            extension varchar(32) NOT NULL,
            mime_type varchar(255) NOT NULL,
            key text NOT NULL,
            created_at timestamptz NOT NULL)
        """)


def downgrade() -> None:
    for schema in _versions():
        op.execute(f'DROP TABLE "{schema}".upload_files')
