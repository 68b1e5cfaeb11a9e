"""Annotation reply names its collection: an enable job builds one of its own beside the one
in force and switches to it only when complete (`workers/conversation/annotations.py`).
Settings in force before were built into the app's one collection (`annotations_<app>`,
as the `AnnotationReplyJobEnded` v1 upcaster also says), which every read-model version's
setting row now names.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f"ALTER TABLE {schema}.annotation_reply_settings"
                   " ADD COLUMN collection varchar(64)")
        # as schemas/conversation/naming.py names it: "annotations_" + the app id's hex
        op.execute(f"UPDATE {schema}.annotation_reply_settings"
                   " SET collection = 'annotations_' || replace(app_id::text, '-', '')")
        op.execute(f"ALTER TABLE {schema}.annotation_reply_settings"
                   " ALTER COLUMN collection SET NOT NULL")


def downgrade() -> None:
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f"ALTER TABLE {schema}.annotation_reply_settings DROP COLUMN collection")
