"""The statistics projection (apps' monitoring figures, projections/statistics/): its first
version `statistics_v1`, live and active, as 0001 registered `console_v1`.

Events recorded before this revision reach it only when their aggregate has a new event (the
runner fills an aggregate's gap from the store); an installation with history runs
`eddy projections rebuild statistics` and switches to the version it builds.

Revision ID: 0027
Revises: 0026
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

SCHEMA = "statistics_v1"


def upgrade() -> None:
    op.execute(f'CREATE SCHEMA "{SCHEMA}"')
    op.execute(f"""
        CREATE TABLE "{SCHEMA}".stat_windows (
            app_id uuid NOT NULL,
            window_start timestamptz NOT NULL,
            messages bigint NOT NULL DEFAULT 0,
            message_tokens bigint NOT NULL DEFAULT 0,
            answer_tokens bigint NOT NULL DEFAULT 0,
            price_units bigint NOT NULL DEFAULT 0,
            latency_us bigint NOT NULL DEFAULT 0,
            likes bigint NOT NULL DEFAULT 0,
            sessions bigint NOT NULL DEFAULT 0,
            session_messages bigint NOT NULL DEFAULT 0,
            runs bigint NOT NULL DEFAULT 0,
            run_tokens bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (app_id, window_start))
    """)
    op.execute(f"""
        CREATE TABLE "{SCHEMA}".stat_members (
            app_id uuid NOT NULL,
            window_start timestamptz NOT NULL,
            kind varchar(16) NOT NULL,
            member varchar(255) NOT NULL,
            count bigint NOT NULL,
            PRIMARY KEY (app_id, window_start, kind, member))
    """)
    op.execute(f"""
        CREATE TABLE "{SCHEMA}".stat_conversations (
            conversation_id uuid PRIMARY KEY,
            app_id uuid NOT NULL,
            window_start timestamptz NOT NULL,
            message_ids jsonb NOT NULL)
    """)
    op.execute(f"""
        CREATE TABLE "{SCHEMA}".stat_messages (
            message_id uuid PRIMARY KEY,
            app_id uuid NOT NULL,
            conversation_id uuid NOT NULL,
            end_user_id uuid NOT NULL,
            window_start timestamptz NOT NULL,
            message_tokens bigint NOT NULL,
            answer_tokens bigint NOT NULL,
            price_units bigint NOT NULL,
            latency_us bigint NOT NULL,
            rating varchar(16))
    """)
    op.execute(f"""
        CREATE TABLE "{SCHEMA}".stat_runs (
            run_id uuid PRIMARY KEY,
            app_id uuid NOT NULL,
            window_start timestamptz NOT NULL,
            creator varchar(255) NOT NULL,
            tokens bigint NOT NULL)
    """)
    op.execute("INSERT INTO projection_versions"
               " (projection, version, schema_name, layout, state, active, activated_at)"
               f" VALUES ('statistics', 1, '{SCHEMA}', 1, 'live', true, now())")


def downgrade() -> None:
    # every version a rebuild added too, with its bookkeeping
    for schema in read_model_schemas(op.get_bind(), "statistics"):
        op.execute(f'DROP SCHEMA "{schema}" CASCADE')
        for table in ("projection_tracking", "projection_parked", "projection_checkpoints"):
            op.execute(f"DELETE FROM {table} WHERE projection = '{schema}'")
    op.execute("DELETE FROM projection_versions WHERE projection = 'statistics'")
