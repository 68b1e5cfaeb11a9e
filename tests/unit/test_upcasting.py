"""Old event versions are lifted to the current schema on read; stored rows never change."""

from __future__ import annotations

from uuid import uuid4

import orjson
import pytest

from bootstrap import ASSEMBLY
from events.postgres_store import decode_stored
from events.registry import UnknownEventType
from schemas.platform.events import AppCreated

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
