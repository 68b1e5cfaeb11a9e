"""Knowledge tags, dataset metadata fields and document metadata values.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE console_v1.datasets"
               " ADD COLUMN built_in_field_enabled boolean NOT NULL DEFAULT false")
    # metadata field id -> value
    op.execute("ALTER TABLE console_v1.documents"
               " ADD COLUMN doc_metadata jsonb NOT NULL DEFAULT '{}'")
    op.execute("""
        CREATE TABLE console_v1.dataset_metadata_fields (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            dataset_id uuid NOT NULL,
            name varchar(255) NOT NULL,
            type varchar(16) NOT NULL,
            created_by uuid,
            created_at timestamptz NOT NULL,
            updated_by uuid,
            updated_at timestamptz NOT NULL)
    """)
    op.execute("CREATE INDEX dataset_metadata_fields_dataset_idx"
               " ON console_v1.dataset_metadata_fields (dataset_id, created_at)")
    op.execute("""
        CREATE TABLE console_v1.tags (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            type varchar(16) NOT NULL,
            name varchar(255) NOT NULL,
            created_by uuid,
            created_at timestamptz NOT NULL)
    """)
    op.execute("CREATE INDEX tags_tenant_idx ON console_v1.tags (tenant_id, type, created_at)")
    op.execute("""
        CREATE TABLE console_v1.tag_bindings (
            tag_id uuid NOT NULL,
            target_id uuid NOT NULL,
            tenant_id uuid NOT NULL,
            created_by uuid,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (tag_id, target_id))
    """)
    op.execute("CREATE INDEX tag_bindings_target_idx ON console_v1.tag_bindings (target_id)")


def downgrade() -> None:
    for table in ("tag_bindings", "tags", "dataset_metadata_fields"):
        op.execute(f"DROP TABLE console_v1.{table}")
    op.execute("ALTER TABLE console_v1.documents DROP COLUMN doc_metadata")
    op.execute("ALTER TABLE console_v1.datasets DROP COLUMN built_in_field_enabled")
