"""Old event versions are lifted to the current schema on read; stored rows never change."""

from __future__ import annotations

from uuid import uuid4

import orjson
import pytest

from bootstrap import ASSEMBLY
from events.postgres_store import decode_stored
from events.registry import UnknownEventType
from schemas.conversation.naming import annotation_collection
from schemas.knowledge.events import DocumentCreated, DocumentSourceReplaced
from schemas.knowledge.naming import legacy_process_rule_id, legacy_upload_file_id
from schemas.platform.events import AppCreated
from schemas.platform.naming import account_id_for

TYPES = ASSEMBLY.event_types


def _v1_app_created(icon: str) -> bytes:
    return orjson.dumps({
        "event_id": str(uuid4()), "schema_version": 1, "tenant_id": str(uuid4()),
        "occurred_at": "2026-01-02T03:04:05+00:00", "correlation_id": str(uuid4()),
        "causation_id": str(uuid4()),
        "payload": {"name": "Old app", "mode": "chat", "description": "", "icon": icon,
                    "created_by": str(uuid4())},
    })


def test_v1_app_created_is_upcast_to_v2() -> None:
    event = decode_stored(TYPES, uuid4(), 1, "App:AppCreated", _v1_app_created("🦜"),
                          position=7)
    assert event.schema_version == AppCreated.schema_version == 2
    # decoding validates the upcast payload against today's schema
    assert isinstance(event.payload, AppCreated)
    assert (event.payload.icon_type, event.payload.icon) == ("emoji", "🦜")
    assert event.payload.icon_background == "#FFEAD5"
    assert event.position == 7


def test_v1_image_icon_becomes_image_type() -> None:
    version, payload = TYPES.upcast("AppCreated", 1, {
        "name": "a", "mode": "chat", "description": "", "icon": "https://x.test/i.png",
        "created_by": str(uuid4())})
    assert version == 2 and payload["icon_type"] == "image"


def test_current_version_passes_through_unchanged() -> None:
    payload = {"name": "a", "mode": "chat"}
    assert TYPES.upcast("AppDeleted", 1, payload) == (1, payload)


def test_unknown_event_type_is_an_error() -> None:
    with pytest.raises(UnknownEventType):
        TYPES.upcast("NoSuchEvent", 1, {})


def test_v1_document_events_get_file_and_rule_ids_from_their_file() -> None:
    key = f"datasets/{uuid4()}/{uuid4()}/source/notes.txt"
    source = {"key": key, "name": "notes.txt", "size": 5, "extension": "txt"}
    created = {"dataset_id": str(uuid4()), "name": "notes.txt", "position": 1, "batch": "b",
               "data_source_type": "upload_file", "source": source, "doc_form": "text_model",
               "doc_language": "English", "process_rule": {"mode": "automatic"},
               "indexing_technique": "economy", "created_from": "api",
               "created_by": str(uuid4())}
    version, payload = TYPES.upcast("DocumentCreated", 1, created)
    event = DocumentCreated.model_validate(payload)
    assert version == DocumentCreated.schema_version == 2
    assert event.source.id == legacy_upload_file_id(key)
    assert event.process_rule_id == legacy_process_rule_id(key)
    # the same file always gets the same ids (a rebuilt read model shows what it showed)
    assert TYPES.upcast("DocumentCreated", 1, created) == (version, payload)

    replaced = {"name": "v2.txt", "source": {**source, "key": key + "2"},
                "process_rule": {"mode": "automatic"}, "updated_by": str(uuid4())}
    version, payload = TYPES.upcast("DocumentSourceReplaced", 1, replaced)
    event2 = DocumentSourceReplaced.model_validate(payload)
    assert version == 2 and event2.source.id == legacy_upload_file_id(key + "2")
    assert event2.source.id != event.source.id


def test_v1_account_registered_loses_its_hash_and_names_its_credentials() -> None:
    version, payload = TYPES.upcast("AccountRegistered", 1, {
        "email": "Owner@Example.com", "name": "Owner", "password_hash": "$argon2id$v=19$x"})
    assert version == 2 and "password_hash" not in payload
    # migration 0016 moved the hash to the row keyed by the account's own id
    assert payload["credentials_id"] == str(account_id_for("owner@example.com"))


def test_v1_annotation_reply_job_ended_names_the_one_collection_of_before() -> None:
    app_id, job_id = uuid4(), uuid4()
    for status, collection in (("completed", annotation_collection(app_id)), ("error", "")):
        version, payload = TYPES.upcast("AnnotationReplyJobEnded", 1, {
            "app_id": str(app_id), "job_id": str(job_id), "status": status, "error": ""})
        assert (version, payload["collection"]) == (2, collection)
