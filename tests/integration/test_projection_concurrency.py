"""The console read model on real Postgres, with partitions applied concurrently.

tests/unit/test_projection_interleaving.py shows the projectors converge under any order of
partitions, one event at a time, on SQLite. Here the same history goes through the real
`ProjectionRunner` (its Postgres tracking) on a migrated database: once in store order, and
then with its events spread over partitions by aggregate id (as the relay keys them), each
partition a task applying its own batches in order while the others run at the same time,
so transactions of different partitions overlap (the advisory locks of
`projections.platform.projectors.lock` are what keeps a child inserted concurrently with its
parent's deletion out). A failure the runtime would retry (a deadlock between two
partitions' batches) is retried. Every read-model table must come out identical.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.transient import is_transient
from bootstrap import build_engine
from events.envelope import Envelope
from projections.conversation.tables import annotation_hits
from projections.layout import FIRST_LAYOUT, version_engine
from projections.runner import ProjectionRunner
from schemas.conversation import events as cev
from tests.harness import eventually, migrate, node_settings
from tests.unit.test_projection_interleaving import (
    PROJECTION,
    Event,
    History,
    ReadModel,
    differences,
    read_model,
    record,
)

PARTITIONS = 4
SEEDS = range(6)


async def applied(engine: AsyncEngine, history: History,
                  lanes: Sequence[Sequence[Event]], seed: int) -> ReadModel:
    """Each lane (a partition's events, in order) applied by its own task in random-sized
    batches, one transaction each, all lanes at once."""
    runner = ProjectionRunner(engine, PROJECTION, history.store, "console_v1")

    async def consume(lane: Sequence[Event], rng: random.Random) -> None:
        i = 0
        while i < len(lane):
            batch = lane[i:i + rng.randint(1, 8)]
            try:
                await runner.apply_many(batch)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                continue  # as the runtime does: the batch again (none of it was applied)
            i += len(batch)
            await asyncio.sleep(rng.random() / 500)

    await asyncio.gather(*(consume(lane, random.Random(seed * 100 + n))
                           for n, lane in enumerate(lanes)))
    return await read_model(engine)


def partitions(log: Sequence[Event], seed: int) -> list[list[Event]]:
    """The log spread over partitions by aggregate id (a seeded salt varies the grouping)."""
    lanes: dict[int, list[Event]] = defaultdict(list)
    for event in log:
        lanes[hash((seed, event.aggregate_id)) % PARTITIONS].append(event)
    return list(lanes.values())


async def console_database(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
                           name: str) -> AsyncEngine:
    """A migrated database's console read model, deadlocks found after 50 ms (not 1 s)."""
    database = fresh_database(name)
    settings = node_settings(postgres, database, "redis://127.0.0.1:1/0")
    await asyncio.to_thread(migrate, settings)
    engine = version_engine(build_engine(settings), "console_v1", FIRST_LAYOUT)
    async with engine.begin() as conn:
        await conn.execute(text(f"ALTER DATABASE {database} SET deadlock_timeout = '50ms'"))
    await engine.dispose()  # new connections take the setting
    return engine


async def test_concurrent_partitions_on_postgres_give_the_store_order_read_model(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], tmp_path: Path) -> None:
    history = await record(tmp_path)

    async def database(name: str) -> AsyncEngine:
        return await console_database(postgres, fresh_database, name)

    models: dict[str, ReadModel] = {}
    runs: dict[str, tuple[int, Any]] = {"store-order": (-1, [history.log])}
    runs |= {f"seed-{seed}": (seed, partitions(history.log, seed)) for seed in SEEDS}
    for name, (seed, lanes) in runs.items():
        engine = await database(f"mix{seed + 1}")
        try:
            models[name] = await applied(engine, history, lanes, seed)
        finally:
            await engine.dispose()

    reference = models.pop("store-order")
    assert reference["tombstones"] and reference["documents"]
    for name, model in models.items():
        assert model == reference, "\n".join([f"{name} differs from store order:",
                                              *differences(reference, model)])


async def test_batches_hitting_two_annotations_in_opposite_orders_both_apply(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str]) -> None:
    """Annotation hits are events of conversations, so two partitions' batches may hit the
    same annotations in opposite orders at once. Both are held at their first row (the test
    locks the rows) and then let go together: taking the rows in event order, each would
    hold one row and wait for the other's (a deadlock, one batch failed); taken in id order,
    one waits for the other."""
    engine = await console_database(postgres, fresh_database, "hits")
    app_id, annotations = uuid4(), sorted([uuid4(), uuid4()])

    def hits(order: list[UUID]) -> list[Event]:
        conversation_id, cid = uuid4(), uuid4()
        return [Envelope.new(
            cev.AnnotationHit(app_id=app_id, annotation_id=annotation_id, message_id=uuid4(),
                              question="Hours?", score=0.9),
            aggregate_type="Conversation", aggregate_id=conversation_id,
            aggregate_version=version, tenant_id=uuid4(), correlation_id=cid,
            causation_id=cid) for version, annotation_id in enumerate(order, start=1)]

    async def apply(events: list[Event]) -> None:
        async with engine.begin() as conn:
            await PROJECTION.apply(conn, events)

    async def waiting_for_a_lock() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))
            ).scalar_one())

    try:
        await apply(hits(annotations))  # both rows exist
        async with engine.connect() as holder:
            await holder.execute(select(annotation_hits).with_for_update())
            batches = [asyncio.create_task(apply(hits(annotations))),
                       asyncio.create_task(apply(hits(annotations[::-1])))]
            await eventually(waiting_for_a_lock, expect=2)
            await holder.commit()
        await asyncio.gather(*batches)
        async with engine.connect() as conn:
            counts = (await conn.execute(select(annotation_hits.c.annotation_id,
                                                annotation_hits.c.hit_count))).all()
        assert sorted(counts) == [(annotations[0], 3), (annotations[1], 3)]
    finally:
        await engine.dispose()
