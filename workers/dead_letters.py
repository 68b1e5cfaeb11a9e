"""Operating the dead-letter topics (`eddy dlq list|show|replay|drop`).

A dead letter is what `workers.runtime._dead_letter` parked on `<topic>.dlq`: the original
message (key, value, headers) plus `dlq_*` headers (error, traceback, group, source topic and
partition, attempts, failure time).

Redis Streams only: the DLQ partitions are read with XRANGE, which is no consumer group, so
reading never consumes anything for anyone else; a dead letter leaves the DLQ with XDEL once
it was replayed or its drop recorded. Its id is `<partition>:<stream entry id>`.

- replay: the original message (its own headers, without `dlq_*`) is published again to its
  source topic, then deleted from the DLQ. Every group reading that topic sees it again (the
  bus cannot address one group); handlers are at-least-once anyway. `replay_count` and
  `replay_first_failed_at` headers ride along, so if it fails again the new dead letter
  still knows when it first failed.
- drop: requires a reason; the dead letter is appended, with `dropped_reason`, `dropped_at`,
  `dropped_by` headers, to `<topic>.dlq.dropped` (a stream no group reads, so
  `trim_consumed` keeps it whole), a warning is logged, then it is deleted from the DLQ.
  A projection's dead letter is an event parked in the versions that could not apply it
  (`projections/parking.py`): dropping it skips it there (`ParkedSkips`), so its
  aggregate's later events are applied and the read model moves on.
"""

from __future__ import annotations

import getpass
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import ResponseError

from adapters.bus.base import TopicSpec
from adapters.bus.redis_streams import RedisStreamsBus
from events.registry import EventTypes
from events.store import EventStore
from projections.registry import Projection
from projections.runner import ProjectionRunner
from projections.versions import ReadModels, maintained_versions
from schemas.topics import DEAD_LETTER_SUFFIX, dead_letter_topic
from workers.processors import projection_of_group

log = logging.getLogger(__name__)

DROPPED_SUFFIX = ".dropped"
REPLAY_COUNT = "replay_count"
REPLAY_FIRST_FAILED_AT = "replay_first_failed_at"


class DeadLetterError(LookupError):
    """An unknown DLQ topic, a malformed or unknown dead-letter id."""


def dlq_name(topic: str) -> str:
    """`events.platform` or `events.platform.dlq` -> `events.platform.dlq`."""
    return topic if topic.endswith(DEAD_LETTER_SUFFIX) else dead_letter_topic(topic)


def dropped_topic(dlq: str) -> str:
    return dlq + DROPPED_SUFFIX


@dataclass(frozen=True)
class DeadLetter:
    topic: str  # the DLQ topic
    id: str  # "<partition>:<entry id>"
    key: str
    value: bytes
    headers: dict[str, str]

    @property
    def failed_at(self) -> str:
        return self.headers.get("dlq_failed_at", "")

    @property
    def first_failed_at(self) -> str:
        return self.headers.get(REPLAY_FIRST_FAILED_AT) or self.failed_at

    @property
    def source_topic(self) -> str:
        return self.headers.get("dlq_source_topic") or self.topic.removesuffix(
            DEAD_LETTER_SUFFIX)

    def original_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if not k.startswith("dlq_")}

    def summary(self) -> dict[str, Any]:
        h = self.headers
        return {
            "topic": self.topic, "id": self.id, "key": self.key,
            "source_topic": self.source_topic, "group": h.get("dlq_group"),
            "attempts": int(h.get("dlq_attempts") or 0),
            "replays": int(h.get(REPLAY_COUNT) or 0),
            "first_failed_at": self.first_failed_at, "last_failed_at": self.failed_at,
            "error": h.get("dlq_error", ""),
        }

    def detail(self) -> dict[str, Any]:
        value: Any
        try:
            value = json.loads(self.value)
        except ValueError:
            value = self.value.decode(errors="replace")
        return {**self.summary(), "source_partition": self.headers.get("dlq_source_partition"),
                "traceback": self.headers.get("dlq_traceback", ""),
                "headers": self.original_headers(), "value": value}


def _split_id(letter_id: str) -> tuple[int, str]:
    partition, sep, entry = letter_id.partition(":")
    if not sep or not partition.isdigit() or not entry:
        raise DeadLetterError(f"malformed dead-letter id {letter_id!r} "
                              "(expected <partition>:<entry id>, as `eddy dlq list` shows)")
    return int(partition), entry


class ParkedSkips:
    """What dropping a projection's dead letter means: its event, parked in the versions of
    that projection that could not apply it, is skipped there (the operator's decision)."""

    def __init__(self, read_models: ReadModels, store: EventStore, types: EventTypes,
                 projections: Mapping[str, Projection]) -> None:
        self.read_models, self.store, self.types = read_models, store, types
        self.projections = projections

    async def skip(self, letter: DeadLetter, reason: str) -> list[str]:
        """The versions where the letter's event was parked and is now skipped."""
        projection = self.projections.get(
            projection_of_group(letter.headers.get("dlq_group", "")) or "")
        if projection is None:
            return []
        event = self.types.envelope_from_json(letter.value)
        skipped = []
        for version in await maintained_versions(self.read_models.database, projection.name):
            runner = ProjectionRunner(self.read_models.engine_for(version), projection,
                                      self.store, version.schema)
            if await runner.skip_parked(event, reason):
                skipped.append(version.schema)
        return skipped


class DeadLetterQueues:
    """The DLQ topics of one deployment (its topic prefix), on Redis Streams."""

    def __init__(self, bus: RedisStreamsBus, skips: ParkedSkips | None = None) -> None:
        self.bus = bus
        self.skips = skips  # without it, dropping a projection's dead letter skips nothing

    async def topics(self) -> list[str]:
        """Every registered DLQ topic."""
        names = (k.decode() for k in await self.bus.client.hkeys(self.bus.topics_key))
        return sorted(n for n in names if n.endswith(DEAD_LETTER_SUFFIX))

    async def _partitions(self, dlq: str) -> int:
        try:
            return await self.bus.partition_count(dlq)
        except LookupError as exc:
            raise DeadLetterError(f"unknown topic {dlq!r}") from exc

    async def list(self, topic: str, group: str | None = None) -> list[DeadLetter]:
        """The dead letters of one topic, oldest first per partition (without consuming)."""
        letters = await self._read(dlq_name(topic))
        return [d for d in letters if group is None or d.headers.get("dlq_group") == group]

    async def _read(self, dlq: str) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for partition in range(await self._partitions(dlq)):
            stream = self.bus.stream_name(dlq, partition)
            try:
                entries = await self.bus.client.xrange(stream)
            except ResponseError:
                continue
            out += [self._letter(dlq, partition, e, f) for e, f in entries]
        return out

    async def get(self, topic: str, letter_id: str) -> DeadLetter:
        dlq = dlq_name(topic)
        partition, entry = _split_id(letter_id)
        if partition >= await self._partitions(dlq):
            raise DeadLetterError(f"{dlq} has no partition {partition}")
        try:
            entries = await self.bus.client.xrange(self.bus.stream_name(dlq, partition),
                                                   entry, entry)
        except ResponseError as exc:
            raise DeadLetterError(f"malformed dead-letter id {letter_id!r}: {exc}") from exc
        if not entries:
            raise DeadLetterError(f"no dead letter {letter_id} on {dlq}")
        return self._letter(dlq, partition, *entries[0])

    async def replay(self, letter: DeadLetter) -> None:
        """Publish the original message to its source topic again, then remove it."""
        headers = letter.original_headers()
        headers[REPLAY_COUNT] = str(int(headers.get(REPLAY_COUNT) or 0) + 1)
        headers[REPLAY_FIRST_FAILED_AT] = letter.first_failed_at
        await self.bus.publish(letter.source_topic, letter.key, letter.value, headers)
        await self._delete(letter)
        log.info("dead letter replayed", extra={
            "topic": letter.topic, "id": letter.id, "source_topic": letter.source_topic,
            "key": letter.key})

    async def drop(self, letter: DeadLetter, reason: str, by: str | None = None) -> list[str]:
        """Record the drop on `<dlq>.dropped` (with the reason), skip its event where it is
        parked, then remove it. Returns the read-model versions that skipped it."""
        if not reason.strip():
            raise ValueError("a drop needs a reason")
        record = dropped_topic(letter.topic)
        await self.bus.ensure_topics([TopicSpec(record, 1)])
        who = by or _operator()
        await self.bus.publish(record, letter.key, letter.value, {
            **letter.headers, "dropped_reason": reason, "dropped_by": who,
            "dropped_at": datetime.now(UTC).isoformat(), "dropped_id": letter.id})
        skipped = await self.skips.skip(letter, reason) if self.skips is not None else []
        await self._delete(letter)
        log.warning("dead letter dropped", extra={
            "topic": letter.topic, "id": letter.id, "key": letter.key, "reason": reason,
            "by": who, "recorded_on": record, "skipped_in": skipped})
        return skipped

    async def dropped(self, topic: str) -> list[DeadLetter]:
        """The drop records of a topic's DLQ."""
        record = dropped_topic(dlq_name(topic))
        if await self.bus.client.hget(self.bus.topics_key, record) is None:
            return []
        return await self._read(record)

    async def _delete(self, letter: DeadLetter) -> None:
        partition, entry = _split_id(letter.id)
        await self.bus.client.xdel(self.bus.stream_name(letter.topic, partition), entry)

    @staticmethod
    def _letter(dlq: str, partition: int, entry: bytes, fields: dict[bytes, bytes]
                ) -> DeadLetter:
        return DeadLetter(topic=dlq, id=f"{partition}:{entry.decode()}",
                          key=fields[b"key"].decode(), value=fields[b"value"],
                          headers=json.loads(fields.get(b"headers") or b"{}"))


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
