"""Workflow runs, their node executions and an app's run logs (Service API
/workflows/run/{id}, /workflows/logs; the console's run history), in every version of the
console read model. No run was recorded before this revision: each version is complete with
the tables empty.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

TABLES = ("workflow_app_logs", "workflow_node_executions", "workflow_runs")


def upgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f"""
        CREATE TABLE "{schema}".workflow_runs (
            id uuid PRIMARY KEY,
            tenant_id uuid,
            app_id uuid NOT NULL,
            workflow_id uuid NOT NULL,
            version varchar(255) NOT NULL,
            sequence_number integer NOT NULL,
            mode varchar(32) NOT NULL,
            triggered_from varchar(32) NOT NULL,
            node_id text,
            status varchar(32) NOT NULL,
            inputs jsonb NOT NULL,
            outputs jsonb,
            outputs_ref text,
            error text,
            elapsed_time double precision NOT NULL,
            total_tokens integer NOT NULL,
            total_steps integer NOT NULL,
            exceptions_count integer NOT NULL,
            created_by_role varchar(16) NOT NULL,
            created_by uuid,
            session_id text NOT NULL,
            conversation_id uuid,
            message_id uuid,
            created_at timestamptz NOT NULL,
            finished_at timestamptz)
        """)
        op.execute(f'CREATE INDEX ix_workflow_runs_app_created ON "{schema}".workflow_runs '
                   "(app_id, triggered_from, created_at)")
        op.execute(f"""
        CREATE TABLE "{schema}".workflow_node_executions (
            id uuid PRIMARY KEY,
            tenant_id uuid,
            app_id uuid NOT NULL,
            workflow_id uuid NOT NULL,
            workflow_run_id uuid NOT NULL,
            "index" integer NOT NULL,
            predecessor_node_id text,
            node_id text NOT NULL,
            node_type varchar(64) NOT NULL,
            title text NOT NULL,
            inputs jsonb,
            process_data jsonb,
            outputs jsonb,
            outputs_ref text,
            status varchar(32) NOT NULL,
            error text,
            elapsed_time double precision NOT NULL,
            execution_metadata jsonb,
            retry_index integer,
            created_at timestamptz NOT NULL,
            finished_at timestamptz)
        """)
        op.execute("CREATE INDEX ix_workflow_node_executions_run ON "
                   f'"{schema}".workflow_node_executions (workflow_run_id, "index")')
        op.execute(f"""
        CREATE TABLE "{schema}".workflow_app_logs (
            id uuid PRIMARY KEY,
            tenant_id uuid,
            app_id uuid NOT NULL,
            workflow_id uuid NOT NULL,
            workflow_run_id uuid NOT NULL,
            created_from varchar(32) NOT NULL,
            created_by_role varchar(16) NOT NULL,
            created_by uuid,
            created_at timestamptz NOT NULL)
        """)
        op.execute(f'CREATE INDEX ix_workflow_app_logs_app_created ON "{schema}".workflow_app_logs'
                   " (app_id, created_at)")


def downgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        for table in TABLES:
            op.execute(f'DROP TABLE "{schema}".{table}')
