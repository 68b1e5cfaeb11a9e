"""Migration 0013 on a real Postgres: documents made before files and process rules had ids
get the ids their v1 events are upcast to, so the read model shows what a rebuild from the
event store would show; the signed download link finds them by that file id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID, uuid4

import orjson
import psycopg

from adapters.embedded.postgres import EmbeddedPostgres
from migrations.runner import upgrade
from schemas.knowledge.events import DocumentCreated, DocumentSourceReplaced
from tests.harness import event_store, migrated


def _v1(tenant: UUID, payload: dict[str, object]) -> bytes:
    return orjson.dumps({
        "event_id": str(uuid4()), "schema_version": 1, "tenant_id": str(tenant),
        "occurred_at": "2026-01-02T03:04:05+00:00", "correlation_id": str(uuid4()),
        "causation_id": str(uuid4()), "payload": payload})


def test_0013_gives_old_documents_the_ids_their_events_are_upcast_to(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
) -> None:
    database = fresh_database("mig")
    url = migrated(postgres, database, "0012")

    tenant, dataset, document, owner = uuid4(), uuid4(), uuid4(), uuid4()
    first = {"key": f"datasets/{dataset}/{document}/source/a.txt", "name": "a.txt",
             "size": 3, "extension": "txt", "mime_type": "text/plain"}
    current = {**first, "key": f"datasets/{dataset}/{document}/source/1a2b-b.txt",
               "name": "b.txt"}
    rule = {"mode": "automatic", "rules": {}}
    created_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with psycopg.connect(postgres.dsn(database)) as conn:
        conn.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, 1, 'Document:DocumentCreated', %s),"
            " (%s, 2, 'Document:DocumentSourceReplaced', %s)",
            (document, _v1(tenant, {
                "dataset_id": str(dataset), "name": "a.txt", "position": 1, "batch": "b",
                "data_source_type": "upload_file", "source": first, "doc_form": "text_model",
                "doc_language": "English", "process_rule": rule,
                "indexing_technique": "economy", "created_from": "api",
                "created_by": str(owner)}),
             document, _v1(tenant, {"name": "b.txt", "source": current, "process_rule": rule,
                                    "updated_by": str(owner)})))
        # the read model as the old projectors left it: the file without id, no rule id
        conn.execute(
            "INSERT INTO console_v1.documents (id, tenant_id, dataset_id, position, name, batch,"
            " data_source_type, source, doc_form, doc_language, process_rule,"
            " indexing_technique, created_from, created_by, created_at, updated_at, attempt,"
            " indexing_status) VALUES (%s, %s, %s, 1, 'b.txt', 'b', 'upload_file', %s,"
            " 'text_model', 'English', %s, 'economy', 'api', %s, %s, %s, 2, 'waiting')",
            (document, tenant, dataset, orjson.dumps(current).decode(),
             orjson.dumps(rule).decode(), owner, created_at, created_at))
        conn.commit()

    upgrade(url)

    with event_store(postgres, database) as store:
        created, replaced = (e.payload for e in store.read_from(0, 10))
    assert isinstance(created, DocumentCreated)
    assert isinstance(replaced, DocumentSourceReplaced)
    with psycopg.connect(postgres.dsn(database)) as conn:
        source, rule_id = conn.execute(
            "SELECT source, process_rule_id FROM console_v1.documents").fetchone()  # type: ignore[misc]
        found = conn.execute("SELECT id FROM console_v1.documents WHERE source->>'id' = %s",
                             (str(replaced.source.id),)).fetchall()
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'console_v1'"
            " AND tablename = 'documents'")}
    # the current file's id and rule id are exactly what replaying the store gives
    assert UUID(source["id"]) == replaced.source.id != created.source.id
    assert rule_id == replaced.process_rule_id
    assert (source["created_by"], source["created_at"]) == (
        str(owner), int(created_at.timestamp()))
    assert {k: source[k] for k in current} == current
    assert found == [(document,)]
    assert "documents_source_file_idx" in indexes
