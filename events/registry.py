"""The event types this deployment knows: payload classes by type name, and the upcasters
that lift payloads stored under an older schema version. Built from the contexts' manifests.

Stored events are never rewritten: an event stored under an older version is upcast, step by
step, to the current version whenever it is read (by aggregates, the relay and projectors).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from events.envelope import Envelope, envelope_fields
from schemas.base import EventPayload, Upcaster


class UnknownEventType(Exception):
    pass


class EventTypes:
    def __init__(self, payloads: Iterable[type[EventPayload]],
                 upcasters: Mapping[tuple[type[EventPayload], int], Upcaster]) -> None:
        self.by_name: dict[str, type[EventPayload]] = {}
        for cls in payloads:
            if cls.event_type in self.by_name:
                raise ValueError(f"event type {cls.event_type} is declared twice")
            self.by_name[cls.event_type] = cls
        self._upcasters = {(cls.event_type, v): f for (cls, v), f in upcasters.items()}
        for cls in self.by_name.values():
            missing = [v for v in range(1, cls.schema_version)
                       if (cls.event_type, v) not in self._upcasters]
            if missing:
                raise ValueError(f"{cls.event_type} v{cls.schema_version} has no upcaster "
                                 f"from version(s) {missing}")

    def __contains__(self, event_type: str) -> bool:
        return event_type in self.by_name

    def upcast(self, event_type: str, version: int,
               payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Lift a stored payload to the current schema version of its event type."""
        schema = self.by_name.get(event_type)
        if schema is None:
            raise UnknownEventType(event_type)
        while version < schema.schema_version:
            payload = self._upcasters[(event_type, version)](dict(payload))
            version += 1
        return version, payload

    def decode(self, event_type: str, version: int, payload: dict[str, Any]) -> EventPayload:
        """The payload model of a stored or published event, at its current version."""
        _, current = self.upcast(event_type, version, payload)
        return self.by_name[event_type].model_validate(current)

    def envelope_from_json(self, data: bytes) -> Envelope[EventPayload]:
        """An envelope as published on a topic, its payload decoded (and upcast if a
        publisher of an older release sent an older schema version)."""
        raw = orjson.loads(data)
        payload = self.decode(raw["type"], raw["schema_version"], raw["payload"])
        return Envelope(**envelope_fields(raw), schema_version=payload.schema_version,
                        payload=payload)
