"""API keys without plaintext tokens: looked up by sha256, shown from a ciphertext.

The read model gets `token_hash` / `token_ciphertext` / `token_hint`, backfilled from the
old `token` column, which is then dropped. Stored `ApiKeyCreated` v1 events carried the token
in plaintext; they are rewritten into the v2 payload that the event's upcaster yields on
read (`schemas/platform/events.py`), so every reader sees exactly what it saw before and the
secret is gone from the store. Keys created before have no ciphertext (a migration has no
SECRET_KEY): they keep working, and the console shows their hint.

The hash and hint are computed in SQL exactly as `schemas/platform/naming.py` does:
sha256 of the UTF-8 bytes as lowercase hex; prefix through the first "-", "...", last four.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _hash(token: str) -> str:
    return f"encode(sha256(convert_to({token}, 'UTF8')), 'hex')"


def _hint(token: str) -> str:
    return f"left({token}, position('-' in {token})) || '...' || right({token}, 4)"


def upgrade() -> None:
    op.execute("ALTER TABLE console_v1.api_keys ADD COLUMN token_hash varchar(64),"
               " ADD COLUMN token_ciphertext text, ADD COLUMN token_hint text")
    op.execute(f"UPDATE console_v1.api_keys SET token_hash = {_hash('token')},"
               f" token_hint = {_hint('token')}")
    op.execute("ALTER TABLE console_v1.api_keys ALTER COLUMN token_hash SET NOT NULL,"
               " ALTER COLUMN token_hint SET NOT NULL, DROP COLUMN token")
    op.execute("CREATE UNIQUE INDEX api_keys_token_hash_idx ON console_v1.api_keys (token_hash)")

    # Ids, versions and positions stay as they are: only the payload loses its secret.
    op.execute(f"""
        WITH v1 AS (
            SELECT originator_id, originator_version, s, s -> 'payload' ->> 'token' AS token
            FROM (SELECT originator_id, originator_version,
                         convert_from(state, 'UTF8')::jsonb AS s
                  FROM stored_events
                  WHERE split_part(topic, ':', 2) = 'ApiKeyCreated') AS stored
            WHERE (s ->> 'schema_version')::int = 1)
        UPDATE stored_events e
        SET state = convert_to((v1.s || jsonb_build_object(
                'schema_version', 2,
                'payload', (v1.s -> 'payload') - 'token' || jsonb_build_object(
                    'token_hash', {_hash('v1.token')},
                    'token_ciphertext', NULL,
                    'token_hint', {_hint('v1.token')})))::text, 'UTF8')
        FROM v1
        WHERE e.originator_id = v1.originator_id
          AND e.originator_version = v1.originator_version
    """)


def downgrade() -> None:
    # The plaintext tokens are gone on purpose; nothing can bring them back.
    raise NotImplementedError("0004 is irreversible: API tokens are no longer stored")
