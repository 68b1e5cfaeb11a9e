"""Workflow triggers: published workflows' schedule and webhook trigger nodes, in every
version of the console read model. No workflow could have a trigger node before this
revision: each version is complete with the tables empty.

Revision ID: 0023
Revises: 0022
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

TABLES = ("workflow_schedules", "workflow_webhooks")


def upgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f"""
        CREATE TABLE "{schema}".workflow_schedules (
            app_id uuid NOT NULL,
            node_id varchar(255) NOT NULL,
            tenant_id uuid NOT NULL,
            workflow_id uuid NOT NULL,
            cron_expression varchar(255) NOT NULL,
            timezone varchar(64) NOT NULL,
            next_fire_at timestamptz NOT NULL,
            PRIMARY KEY (app_id, node_id))
        """)
        op.execute("CREATE INDEX ix_workflow_schedules_next_fire_at ON "
                   f'"{schema}".workflow_schedules (next_fire_at)')
        op.execute(f"""
        CREATE TABLE "{schema}".workflow_webhooks (
            id uuid PRIMARY KEY,
            app_id uuid NOT NULL,
            node_id varchar(255) NOT NULL,
            tenant_id uuid NOT NULL,
            workflow_id uuid NOT NULL,
            config jsonb NOT NULL,
            created_at timestamptz NOT NULL)
        """)
        op.execute("CREATE UNIQUE INDEX ix_workflow_webhooks_app ON "
                   f'"{schema}".workflow_webhooks (app_id, node_id)')


def downgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        for table in TABLES:
            op.execute(f'DROP TABLE "{schema}".{table}')
