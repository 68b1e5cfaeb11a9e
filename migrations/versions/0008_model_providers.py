"""Model providers of a workspace: provider credentials, custom models, default models.
Credentials are stored sealed with the workspace's key, beside a masked copy for display.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE console_v1.provider_credentials (
            tenant_id uuid NOT NULL,
            provider varchar(255) NOT NULL,
            credentials_ciphertext text NOT NULL,
            credentials_masked jsonb NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, provider))
    """)
    op.execute("""
        CREATE TABLE console_v1.custom_models (
            tenant_id uuid NOT NULL,
            provider varchar(255) NOT NULL,
            model varchar(255) NOT NULL,
            model_type varchar(32) NOT NULL,
            credentials_ciphertext text NOT NULL,
            credentials_masked jsonb NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, provider, model, model_type))
    """)
    op.execute("""
        CREATE TABLE console_v1.default_models (
            tenant_id uuid NOT NULL,
            model_type varchar(32) NOT NULL,
            provider varchar(255) NOT NULL,
            model varchar(255) NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, model_type))
    """)


def downgrade() -> None:
    for table in ("default_models", "custom_models", "provider_credentials"):
        op.execute(f"DROP TABLE console_v1.{table}")
