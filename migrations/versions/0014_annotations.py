"""An app's annotations, its annotation reply jobs and setting (Service API
/apps/annotations, /apps/annotation-reply), in every version of the console read model.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _versions() -> list[str]:
    """Every version of the console read model gets the tables (no history before this
    revision: each version is complete with them empty)."""
    return read_model_schemas(op.get_bind(), "console")


def upgrade() -> None:
    for schema in _versions():
        op.execute(f"""
        CREATE TABLE "{schema}".annotations (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            app_id uuid NOT NULL,
            question text NOT NULL,
            answer text NOT NULL,
            created_at timestamptz NOT NULL)
        """)
        op.execute(f"""
        CREATE TABLE "{schema}".annotation_hits (
            annotation_id uuid PRIMARY KEY,
            app_id uuid NOT NULL,
            hit_count integer NOT NULL)
        """)
        op.execute(f'CREATE INDEX ix_annotations_app_created ON "{schema}".annotations '
                   "(app_id, created_at)")
        op.execute(f"""
        CREATE TABLE "{schema}".annotation_reply_jobs (
            id uuid PRIMARY KEY,
            app_id uuid NOT NULL,
            action varchar(16) NOT NULL,
            status varchar(16) NOT NULL,
            error text NOT NULL DEFAULT '',
            score_threshold double precision NOT NULL,
            embedding_provider_name varchar(255) NOT NULL,
            embedding_model_name varchar(255) NOT NULL,
            created_at timestamptz NOT NULL)
        """)
        op.execute(f"""
        CREATE TABLE "{schema}".annotation_reply_settings (
            app_id uuid PRIMARY KEY,
            score_threshold double precision NOT NULL,
            embedding_provider_name varchar(255) NOT NULL,
            embedding_model_name varchar(255) NOT NULL,
            updated_at timestamptz NOT NULL)
        """)


def downgrade() -> None:
    for schema in _versions():
        for table in ("annotation_reply_settings", "annotation_reply_jobs", "annotation_hits",
                      "annotations"):
            op.execute(f'DROP TABLE "{schema}".{table}')
