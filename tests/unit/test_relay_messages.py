"""What the relay publishes without decoding the stored rows: consumers read the same events
as from decoded ones, and keys land on the partitions Kafka's own partitioner picks."""

from __future__ import annotations

from uuid import uuid4

import orjson
import pytest

from adapters.bus.base import murmur2
from bootstrap import ASSEMBLY
from commands.platform.aggregates import App
from events.envelope import Envelope
from events.postgres_store import decode_stored, encode_stored, message_value
from schemas.platform.events import AppCreated

TYPES = ASSEMBLY.event_types


def _relayed(state: bytes, topic: str, aggregate_id: str, position: int) -> Envelope:
    aggregate_type, _, event_type = topic.partition(":")
    return TYPES.envelope_from_json(
        message_value(aggregate_type, event_type, aggregate_id, 3, position, state))


def test_a_stored_event_passed_through_reads_as_the_decoded_one() -> None:
    event = Envelope.new(
        AppCreated(name="Ünïcode \"quoted\" app", mode="chat", created_by=uuid4()),
        aggregate_type=App.type_name, aggregate_id=uuid4(), aggregate_version=3,
        tenant_id=None, correlation_id=uuid4(), causation_id=uuid4())
    stored = encode_stored(event)
    relayed = _relayed(stored.state, stored.topic, str(event.aggregate_id), 42)
    assert relayed == decode_stored(TYPES, event.aggregate_id, 3, stored.topic, stored.state,
                                    42) == event.at(42)


def test_an_old_schema_version_passed_through_is_upcast_by_its_consumer() -> None:
    state = orjson.dumps({
        "event_id": str(uuid4()), "schema_version": 1, "tenant_id": str(uuid4()),
        "occurred_at": "2026-01-02T03:04:05+00:00", "correlation_id": str(uuid4()),
        "causation_id": str(uuid4()),
        "payload": {"name": "Old app", "mode": "chat", "description": "", "icon": "🦜",
                    "created_by": str(uuid4())},
    })
    relayed = _relayed(state, "App:AppCreated", str(uuid4()), 7)
    assert relayed.schema_version == AppCreated.schema_version == 2
    assert isinstance(relayed.payload, AppCreated)
    assert (relayed.payload.icon_type, relayed.payload.icon) == ("emoji", "🦜")
    assert relayed.position == 7


# Kafka's own test vectors for its partitioner's hash (UtilsTest.testMurmur2), as signed ints.
@pytest.mark.parametrize(("data", "expected"), [
    (b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), (b"abc", 479470107),
])
def test_keys_hash_as_in_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected & 0xFFFFFFFF
