"""Consumer-group progress measured against the event store, on any broker: the relay
numbers the events it publishes per topic partition (`topic_partition_seqs`), each group
records the highest number it handled per partition (`consumer_group_progress`); a
group's lag is the difference.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE topic_partition_seqs (
            topic varchar(255) NOT NULL,
            partition integer NOT NULL,
            seq bigint NOT NULL,
            PRIMARY KEY (topic, partition))
    """)
    op.execute("""
        CREATE TABLE consumer_group_progress (
            consumer_group varchar(255) NOT NULL,
            topic varchar(255) NOT NULL,
            partition integer NOT NULL,
            seq bigint NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (consumer_group, topic, partition))
    """)


def downgrade() -> None:
    op.execute("DROP TABLE consumer_group_progress")
    op.execute("DROP TABLE topic_partition_seqs")
