"""Consumer groups measured against the event store, so the figures are right on any broker.

The relay numbers the messages of each topic partition (`topic_partition_seqs`); each group
records the highest number it has handled per partition (`consumer_group_progress`, written
by `GroupProgress` about once a second). A group's lag is the sum over its partitions of
the difference: events the relay has published to it that it has not handled yet. Events
not relayed yet are the relay's own lag. Members, their partitions and the oldest
unacknowledged message come from the broker (`Bus.group_state`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.bus.base import Bus
from adapters.transient import is_transient
from events.relay import SEQ_HEADER

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class GroupProgress:
    """One member's record of what its group handled, written every FLUSH_SECONDS by a
    task of its own. Observational: a write that fails (the database restarting) is
    retried with the next one and never stops the handler."""

    def __init__(self, engine: AsyncEngine, group: str) -> None:
        self.engine = engine
        self.group = group
        self._handled: dict[tuple[str, int], int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self, partitions: Mapping[str, int]) -> None:
        """Register the group's partitions, at 0 if new (a group that has handled nothing
        yet shows its whole backlog as lag), and start writing."""
        where = [(t, p) for t, n in partitions.items() for p in range(n)]
        await self._write(where, [0] * len(where), "DO NOTHING")
        self._task = asyncio.create_task(self._flush_every(), name=f"progress-{self.group}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
        try:
            await self.flush()
        except Exception as exc:  # best effort: the next member records it
            log.warning("group progress not recorded", extra={
                "group": self.group, "error": repr(exc)[:300]})

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    def handled(self, topic: str, partition: int, headers: Mapping[str, str]) -> None:
        seq = headers.get(SEQ_HEADER)
        if seq is not None:  # relayed (replays and commands carry none)
            key = (topic, partition)
            self._handled[key] = max(self._handled.get(key, 0), int(seq))

    async def flush(self) -> None:
        if not self._handled:
            return
        handled, self._handled = self._handled, {}
        try:
            await self._write(list(handled), list(handled.values()),
                              "DO UPDATE SET seq = greatest(consumer_group_progress.seq,"
                              " excluded.seq), updated_at = excluded.updated_at")
        except Exception as exc:
            for key, seq in handled.items():  # again with the next flush
                self._handled[key] = max(self._handled.get(key, 0), seq)
            log.warning("group progress not recorded, retrying", extra={
                "group": self.group, "error": repr(exc)[:300]},
                exc_info=not is_transient(exc))

    async def _write(self, where: Sequence[tuple[str, int]], seqs: Sequence[int],
                     on_conflict: str) -> None:
        if not where:
            return
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO consumer_group_progress"
                " (consumer_group, topic, partition, seq, updated_at)"
                " SELECT :group, t, p, s, :now FROM unnest(CAST(:topics AS text[]),"
                " CAST(:partitions AS int[]), CAST(:seqs AS bigint[])) AS v(t, p, s)"
                f" ON CONFLICT (consumer_group, topic, partition) {on_conflict}"), {
                    "group": self.group, "now": datetime.now(UTC),
                    "topics": [w[0] for w in where], "partitions": [w[1] for w in where],
                    "seqs": list(seqs)})


@dataclass
class GroupStatus:
    name: str
    topics: list[str]
    lag: int  # events published to its partitions it has not handled
    handled: int  # relayed events handled so far (the sum of its partitions' numbers)
    throughput: float | None  # handled per second since the previous sample
    members: dict[str, list[tuple[str, int]]]  # member -> its (topic, partition)s
    oldest_unacked_age: float | None  # seconds; None when everything is acknowledged
    partition_lag: dict[tuple[str, int], int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"group": self.name, "topics": self.topics, "lag": self.lag,
                "handled": self.handled, "throughput": self.throughput,
                "members": {m: [f"{t}:{p}" for t, p in parts]
                            for m, parts in sorted(self.members.items())},
                "oldest_unacked_age_seconds": self.oldest_unacked_age}


async def group_lags(engine: AsyncEngine) -> dict[str, GroupStatus]:
    """Every group that ever started, with its lag per partition (no broker involved)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT g.consumer_group, g.topic, g.partition, g.seq, coalesce(t.seq, 0)"
            " FROM consumer_group_progress g LEFT JOIN topic_partition_seqs t"
            " ON t.topic = g.topic AND t.partition = g.partition"
            " ORDER BY g.consumer_group, g.topic, g.partition"))).all()
    out: dict[str, GroupStatus] = {}
    for group, topic, partition, handled, published in rows:
        status = out.setdefault(group, GroupStatus(group, [], 0, 0, None, {}, None))
        if topic not in status.topics:
            status.topics.append(topic)
        behind = max(0, int(published) - int(handled))
        status.partition_lag[(topic, partition)] = behind
        status.lag += behind
        status.handled += int(handled)
    return out


async def work_backlog(engine: AsyncEngine, topics: Sequence[str]) -> int:
    """Events relayed to these work topics that their consumer groups (each named after its
    topic) have not handled yet; a group that never started has the whole topic to do."""
    async with engine.connect() as conn:
        behind = (await conn.execute(text(
            "SELECT coalesce(sum(t.seq - coalesce(g.seq, 0)), 0) FROM topic_partition_seqs t"
            " LEFT JOIN consumer_group_progress g ON g.consumer_group = t.topic"
            " AND g.topic = t.topic AND g.partition = t.partition"
            " WHERE t.topic IN :topics").bindparams(
                bindparam("topics", expanding=True)), {"topics": list(topics)})).scalar()
    return max(0, int(behind or 0))


class GroupsSampler:
    """Consumer groups with throughput: each sample is compared with the previous one."""

    def __init__(self, engine: AsyncEngine, bus: Bus) -> None:
        self.engine = engine
        self.bus = bus
        self._previous: tuple[float, dict[str, int]] | None = None

    async def sample(self) -> list[GroupStatus]:
        now = time.monotonic()
        groups = await group_lags(self.engine)
        states = await asyncio.gather(*(self.bus.group_state(g.name, g.topics)
                                        for g in groups.values()))
        wall = datetime.now(UTC)
        for status, state in zip(groups.values(), states, strict=True):
            status.members = state.members
            if state.oldest_unacked is not None:
                status.oldest_unacked_age = max(0.0, (wall - state.oldest_unacked)
                                                .total_seconds())
            if self._previous is not None and status.name in self._previous[1]:
                elapsed = now - self._previous[0]
                status.throughput = (status.handled - self._previous[1][status.name]) / elapsed
        self._previous = (now, {g.name: g.handled for g in groups.values()})
        return list(groups.values())
