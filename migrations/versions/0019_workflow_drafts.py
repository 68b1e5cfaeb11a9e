"""Workflow drafts, versions and what each app publishes (console /workflows/draft,
/workflows, /workflows/publish), in every version of the console read model.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No workflow events before this revision: each version is complete with them empty.
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f"""
        CREATE TABLE "{schema}".workflow_drafts (
            app_id uuid PRIMARY KEY,
            id uuid NOT NULL,
            tenant_id uuid NOT NULL,
            graph jsonb NOT NULL,
            features jsonb NOT NULL,
            environment_variables jsonb NOT NULL,
            conversation_variables jsonb NOT NULL,
            hash varchar(64) NOT NULL,
            dependencies jsonb NOT NULL,
            created_by uuid,
            created_at timestamptz NOT NULL,
            updated_by uuid,
            updated_at timestamptz NOT NULL)
        """)
        op.execute(f"""
        CREATE TABLE "{schema}".workflow_versions (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            app_id uuid NOT NULL,
            kind varchar(16) NOT NULL,
            version varchar(64) NOT NULL,
            graph jsonb NOT NULL,
            features jsonb NOT NULL,
            environment_variables jsonb NOT NULL,
            conversation_variables jsonb NOT NULL,
            marked_name varchar(255) NOT NULL,
            marked_comment text NOT NULL,
            created_by uuid,
            created_at timestamptz NOT NULL)
        """)
        op.execute(f'CREATE INDEX ix_workflow_versions_app ON "{schema}".workflow_versions '
                   "(app_id, kind, created_at)")
        op.execute(f"""
        CREATE TABLE "{schema}".published_workflows (
            app_id uuid PRIMARY KEY,
            workflow_id uuid NOT NULL,
            published_by uuid,
            published_at timestamptz NOT NULL)
        """)


def downgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        for table in ("published_workflows", "workflow_versions", "workflow_drafts"):
            op.execute(f'DROP TABLE "{schema}".{table}')
