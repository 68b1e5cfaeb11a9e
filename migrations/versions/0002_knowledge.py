"""Knowledge read models: datasets, documents (with indexing status), segments.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE console_v1.datasets (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            name varchar(255) NOT NULL,
            description text NOT NULL,
            permission varchar(32) NOT NULL,
            indexing_technique varchar(32),
            embedding_model varchar(255),
            embedding_model_provider varchar(255),
            retrieval_model jsonb NOT NULL,
            created_by uuid NOT NULL,
            created_at timestamptz NOT NULL,
            updated_by uuid,
            updated_at timestamptz NOT NULL)
    """)
    op.execute("CREATE INDEX datasets_tenant_idx ON console_v1.datasets (tenant_id, created_at)")
    op.execute("""
        CREATE TABLE console_v1.documents (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            dataset_id uuid NOT NULL,
            position integer NOT NULL,
            name varchar(255) NOT NULL,
            batch varchar(64) NOT NULL,
            data_source_type varchar(32) NOT NULL,
            source jsonb NOT NULL,
            doc_form varchar(32) NOT NULL,
            doc_language varchar(32) NOT NULL,
            process_rule jsonb NOT NULL,
            indexing_technique varchar(32) NOT NULL,
            created_from varchar(32) NOT NULL,
            created_by uuid NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            attempt integer NOT NULL,
            split_attempt integer NOT NULL DEFAULT 0,
            indexing_status varchar(32) NOT NULL,
            is_paused boolean NOT NULL DEFAULT false,
            error text,
            enabled boolean NOT NULL DEFAULT true,
            disabled_at timestamptz,
            disabled_by uuid,
            archived boolean NOT NULL DEFAULT false,
            archived_at timestamptz,
            word_count integer NOT NULL DEFAULT 0,
            tokens integer NOT NULL DEFAULT 0,
            total_segments integer NOT NULL DEFAULT 0,
            completed_segments integer NOT NULL DEFAULT 0,
            processing_started_at timestamptz,
            parsing_completed_at timestamptz,
            cleaning_completed_at timestamptz,
            splitting_completed_at timestamptz,
            completed_at timestamptz,
            paused_at timestamptz,
            stopped_at timestamptz)
    """)
    op.execute("CREATE INDEX documents_dataset_idx ON console_v1.documents (dataset_id, position)")
    op.execute("CREATE INDEX documents_batch_idx ON console_v1.documents (dataset_id, batch)")
    op.execute("""
        CREATE TABLE console_v1.segments (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            dataset_id uuid NOT NULL,
            document_id uuid NOT NULL,
            attempt integer NOT NULL,
            position integer NOT NULL,
            content text NOT NULL,
            answer text NOT NULL DEFAULT '',
            keywords jsonb NOT NULL DEFAULT '[]',
            word_count integer NOT NULL,
            tokens integer NOT NULL,
            index_node_hash varchar(64) NOT NULL,
            hit_count integer NOT NULL DEFAULT 0,
            enabled boolean NOT NULL DEFAULT true,
            disabled_at timestamptz,
            status varchar(32) NOT NULL,
            child_chunks jsonb NOT NULL DEFAULT '[]',
            created_by uuid,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            indexing_at timestamptz,
            completed_at timestamptz)
    """)
    op.execute("CREATE INDEX segments_document_idx ON console_v1.segments (document_id, position)")
    op.execute("CREATE INDEX segments_dataset_idx ON console_v1.segments (dataset_id)")


def downgrade() -> None:
    for table in ("segments", "documents", "datasets"):
        op.execute(f"DROP TABLE console_v1.{table}")
