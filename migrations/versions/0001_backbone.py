"""Event store, command outcomes, tracking tables, and the console_v1 read models.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The event store, in eventsourcing's PostgresApplicationRecorder layout.
    op.execute("""
        CREATE TABLE stored_events (
            originator_id uuid NOT NULL,
            originator_version bigint NOT NULL,
            topic text,
            state bytea,
            notification_id bigserial,
            PRIMARY KEY (originator_id, originator_version))
    """)
    # The row type eventsourcing's recorder inserts with (unnest of stored_event_uuid[]).
    op.execute(
        "CREATE TYPE stored_event_uuid AS"
        " (originator_id uuid, originator_version bigint, topic text, state bytea)"
    )
    op.execute(
        "CREATE UNIQUE INDEX stored_events_notification_id_idx"
        " ON stored_events (notification_id ASC)"
    )
    op.execute("""
        CREATE TABLE command_outcomes (
            command_id uuid PRIMARY KEY,
            status varchar(16) NOT NULL,
            aggregate_id uuid,
            aggregate_version bigint,
            position bigint,
            result jsonb,
            error jsonb,
            created_at timestamptz NOT NULL DEFAULT now())
    """)
    op.execute("""
        CREATE TABLE idempotency_keys (
            scope_key varchar(512) PRIMARY KEY,
            command_id uuid NOT NULL,
            request_hash varchar(64) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())
    """)
    op.execute("""
        CREATE TABLE relay_positions (
            name varchar(64) PRIMARY KEY,
            position bigint NOT NULL)
    """)
    op.execute("""
        CREATE TABLE projection_tracking (
            projection varchar(64) NOT NULL,
            aggregate_id uuid NOT NULL,
            version bigint NOT NULL,
            position bigint NOT NULL,
            PRIMARY KEY (projection, aggregate_id))
    """)
    op.execute("""
        CREATE TABLE projection_checkpoints (
            projection varchar(64) PRIMARY KEY,
            watermark bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now())
    """)

    op.execute("CREATE SCHEMA console_v1")
    op.execute("""
        CREATE TABLE console_v1.setup_state (
            id integer PRIMARY KEY,
            account_id uuid NOT NULL,
            workspace_id uuid NOT NULL,
            setup_at timestamptz NOT NULL)
    """)
    op.execute("""
        CREATE TABLE console_v1.accounts (
            id uuid PRIMARY KEY,
            email varchar(255) NOT NULL UNIQUE,
            name varchar(255) NOT NULL,
            password_hash text NOT NULL,
            interface_language varchar(32) NOT NULL,
            timezone varchar(64) NOT NULL,
            status varchar(16) NOT NULL,
            created_at timestamptz NOT NULL)
    """)
    op.execute("""
        CREATE TABLE console_v1.workspaces (
            id uuid PRIMARY KEY,
            name varchar(255) NOT NULL,
            status varchar(16) NOT NULL,
            created_at timestamptz NOT NULL)
    """)
    op.execute("""
        CREATE TABLE console_v1.workspace_members (
            workspace_id uuid NOT NULL REFERENCES console_v1.workspaces(id) ON DELETE CASCADE,
            account_id uuid NOT NULL,
            role varchar(16) NOT NULL,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (workspace_id, account_id))
    """)
    op.execute("""
        CREATE TABLE console_v1.apps (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            name varchar(255) NOT NULL,
            mode varchar(32) NOT NULL,
            description text NOT NULL,
            icon_type varchar(16) NOT NULL,
            icon varchar(255) NOT NULL,
            icon_background varchar(32) NOT NULL,
            created_by uuid NOT NULL,
            created_at timestamptz NOT NULL,
            updated_by uuid,
            updated_at timestamptz NOT NULL)
    """)
    op.execute("CREATE INDEX apps_tenant_created_idx ON console_v1.apps (tenant_id, created_at)")
    op.execute("""
        CREATE TABLE console_v1.api_keys (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            type varchar(16) NOT NULL,
            app_id uuid,
            token varchar(255) NOT NULL UNIQUE,
            created_at timestamptz NOT NULL)
    """)
    op.execute("CREATE INDEX api_keys_tenant_app_idx ON console_v1.api_keys (tenant_id, app_id)")


def downgrade() -> None:
    op.execute("DROP SCHEMA console_v1 CASCADE")
    for table in ("projection_checkpoints", "projection_tracking", "relay_positions",
                  "idempotency_keys", "command_outcomes", "stored_events"):
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP TYPE stored_event_uuid")
