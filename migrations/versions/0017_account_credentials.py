"""Password hashes out of the event store: into `account_credentials`, beside it.

`AccountRegistered` v1 carried the account's password hash, so it reached the topics, dead
letters and `eddy events show`. Each stored v1 hash moves into `account_credentials` under
the account's own id, and the stored event is rewritten into the v2 payload its upcaster
yields on read (`schemas/platform/events.py`): no hash, `credentials_id` = the account id.
Every read-model version's `accounts` row names its credentials the same way and loses its
`password_hash` column. Logins keep working, and so after any rebuild of the read model.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

from migrations.read_models import read_model_schemas

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_V1_ACCOUNTS = """
    SELECT originator_id, originator_version, s
    FROM (SELECT originator_id, originator_version, convert_from(state, 'UTF8')::jsonb AS s
          FROM stored_events
          WHERE split_part(topic, ':', 2) = 'AccountRegistered') AS stored
    WHERE (s ->> 'schema_version')::int = 1
"""


def upgrade() -> None:
    op.execute("""
        CREATE TABLE account_credentials (
            id uuid PRIMARY KEY,
            account_id uuid NOT NULL,
            password_hash text NOT NULL,
            created_at timestamptz NOT NULL
        )""")
    op.execute(f"""
        INSERT INTO account_credentials (id, account_id, password_hash, created_at)
        SELECT originator_id, originator_id, s -> 'payload' ->> 'password_hash', now()
        FROM ({_V1_ACCOUNTS}) AS v1""")
    # Ids, versions and positions stay as they are: only the payload loses its secret.
    op.execute(f"""
        WITH v1 AS ({_V1_ACCOUNTS})
        UPDATE stored_events e
        SET state = convert_to((v1.s || jsonb_build_object(
                'schema_version', 2,
                'payload', (v1.s -> 'payload') - 'password_hash' || jsonb_build_object(
                    'credentials_id', v1.originator_id::text)))::text, 'UTF8')
        FROM v1
        WHERE e.originator_id = v1.originator_id
          AND e.originator_version = v1.originator_version""")
    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f"ALTER TABLE {schema}.accounts ADD COLUMN credentials_id uuid")
        op.execute(f"UPDATE {schema}.accounts SET credentials_id = id")
        op.execute(f"ALTER TABLE {schema}.accounts ALTER COLUMN credentials_id SET NOT NULL,"
                   " DROP COLUMN password_hash")


def downgrade() -> None:
    # Code from before reads only v1 events, and v1 carried the hash: giving it back to the
    # store would undo the point of this migration.
    raise NotImplementedError("0016 is irreversible: password hashes left the event store")
