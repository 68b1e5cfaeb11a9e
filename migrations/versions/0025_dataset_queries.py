"""When each dataset was last retrieved from, for the unused-datasets job
(ENABLE_CLEAN_UNUSED_DATASETS_TASK), in every version of the console read model. Empty at
first: no dataset queried as far as the read model knows (a rebuild fills it from the
retrieval events).

Revision ID: 0025
Revises: 0024
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f'CREATE TABLE "{schema}".dataset_queries ('
                   "dataset_id uuid PRIMARY KEY, last_queried_at timestamptz NOT NULL)")


def downgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f'DROP TABLE "{schema}".dataset_queries')
