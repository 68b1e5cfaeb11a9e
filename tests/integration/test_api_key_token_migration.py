"""Migration 0004 on a real Postgres: API keys made before it keep working, by hash, and no
plaintext token is left in the read model or the event store.

What the migration writes must be exactly what the v1 upcaster yields (readers replaying the
store must see the same events before and after), so both are compared here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

import orjson
import psycopg

from adapters.embedded.postgres import EmbeddedPostgres
from schemas.platform.naming import api_token_hash, api_token_hint
from tests.harness import event_store, events_across_upgrade, migrated

TOKENS = ["app-Zm9vYmFyYmF6cXV4cXV1eA", "dataset-ÄnnéSecret-tail"]


def test_0004_hashes_keys_and_scrubs_stored_events(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
) -> None:
    database = fresh_database("mig")
    url = migrated(postgres, database, "0003")

    tenant, app_id = uuid4(), uuid4()
    key_ids = [uuid4() for _ in TOKENS]
    with psycopg.connect(postgres.dsn(database)) as conn:
        for key_id, token in zip(key_ids, TOKENS, strict=True):
            key_type = token.split("-", 1)[0]
            conn.execute(
                "INSERT INTO console_v1.api_keys (id, tenant_id, type, app_id, token, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (key_id, tenant, key_type, app_id if key_type == "app" else None, token,
                 datetime.now(UTC)))
            state = {"event_id": str(uuid4()), "schema_version": 1, "tenant_id": str(tenant),
                     "occurred_at": "2026-01-02T03:04:05+00:00",
                     "correlation_id": str(uuid4()), "causation_id": str(uuid4()),
                     "payload": {"key_type": key_type,
                                 "app_id": str(app_id) if key_type == "app" else None,
                                 "token": token}}
            conn.execute("INSERT INTO stored_events (originator_id, originator_version, topic,"
                          " state) VALUES (%s, 1, 'ApiKey:ApiKeyCreated', %s)",
                          (key_id, orjson.dumps(state)))
        # what readers saw before the migration: the v1 rows, upcast on read
        conn.commit()
    with event_store(postgres, database) as store:
        before, after = events_across_upgrade(store, url)

    assert [e.payload for e in after] == [e.payload for e in before]
    assert [(e.event_id, e.position, e.aggregate_version) for e in after] == [
        (e.event_id, e.position, e.aggregate_version) for e in before]

    with psycopg.connect(postgres.dsn(database)) as conn:
        raw_states = [bytes(r[0]) for r in conn.execute("SELECT state FROM stored_events")]
        rows = conn.execute("SELECT id, token_hash, token_ciphertext, token_hint"
                            " FROM console_v1.api_keys").fetchall()
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'console_v1' AND table_name = 'api_keys'")}
    assert "token" not in columns
    assert sorted(rows) == sorted(
        (key_id, api_token_hash(token), None, api_token_hint(token))
        for key_id, token in zip(key_ids, TOKENS, strict=True))
    for raw in raw_states:
        assert orjson.loads(raw)["schema_version"] == 2
        assert not any(token.encode() in raw for token in TOKENS)
