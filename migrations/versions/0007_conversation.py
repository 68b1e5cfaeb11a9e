"""The conversation context's read model: app model configs and sites, end users,
conversations and messages.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE console_v1.app_model_configs (
            app_id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            config jsonb NOT NULL,
            updated_by uuid NOT NULL,
            updated_at timestamptz NOT NULL)
    """)
    op.execute("""
        CREATE TABLE console_v1.app_sites (
            app_id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            site jsonb NOT NULL,
            updated_at timestamptz NOT NULL)
    """)
    op.execute("""
        CREATE TABLE console_v1.end_users (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            app_id uuid NOT NULL,
            session_id varchar(255) NOT NULL,
            type varchar(32) NOT NULL,
            created_at timestamptz NOT NULL)
    """)
    op.execute("CREATE INDEX ix_end_users_app_id ON console_v1.end_users (app_id)")
    op.execute("""
        CREATE TABLE console_v1.conversations (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            app_id uuid NOT NULL,
            end_user_id uuid NOT NULL,
            mode varchar(32) NOT NULL,
            name varchar(255) NOT NULL,
            inputs jsonb NOT NULL,
            status varchar(16) NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL)
    """)
    op.execute("CREATE INDEX ix_conversations_end_user"
               " ON console_v1.conversations (app_id, end_user_id, updated_at)")
    op.execute("""
        CREATE TABLE console_v1.messages (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            app_id uuid NOT NULL,
            conversation_id uuid NOT NULL,
            end_user_id uuid NOT NULL,
            task_id uuid NOT NULL,
            query text NOT NULL,
            inputs jsonb NOT NULL,
            files jsonb NOT NULL,
            answer text NOT NULL,
            status varchar(16) NOT NULL,
            error text,
            usage jsonb,
            retriever_resources jsonb NOT NULL,
            latency double precision,
            feedback_rating varchar(16),
            feedback_content text,
            feedback_at timestamptz,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL)
    """)
    op.execute("CREATE INDEX ix_messages_conversation"
               " ON console_v1.messages (conversation_id, created_at)")
    op.execute("CREATE INDEX ix_messages_app_feedback ON console_v1.messages (app_id, feedback_at)")


def downgrade() -> None:
    for table in ("messages", "conversations", "end_users", "app_sites", "app_model_configs"):
        op.execute(f"DROP TABLE console_v1.{table}")
