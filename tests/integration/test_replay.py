"""`eddy events replay` on a real node (Postgres, Valkey, pgvector, local embeddings): a
dataset's events replayed to its indexing group rebuild its lost index exactly, twice over,
appending nothing; a side-effecting processor never acts on a replay unless allowed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from uuid import UUID

from prometheus_client import REGISTRY
from sqlalchemy import text

from adapters.embeddings.local_minilm import LocalMiniLM
from adapters.embeddings.models import LOCAL_PROVIDER
from adapters.vector.pgvector import _table
from config import Settings
from contexts.knowledge import INDEXING_BULK, INDEXING_PRIORITY
from projections.progress import relay_lag
from projections.versions import maintained_lags
from schemas.knowledge.naming import vector_collection
from tests.e2e.test_knowledge import (
    FACTS,
    create_dataset,
    create_text_document,
    dataset_key,
    wait_indexed,
)
from tests.harness import Node, eventually, running_node
from tests.integration.test_cli_operations import eddy, json_lines
from workers.node import work_processor
from workers.runtime import run_processor

BACKBONE = ["relay", "commands", "projections", "knowledge.cleanup"]


def vectors_of(dataset_id: str) -> str:
    """The collection of a dataset of the default model (MiniLM)."""
    return vector_collection(UUID(dataset_id), LOCAL_PROVIDER, LocalMiniLM.MODEL_NAME)


async def index_snapshot(node: Node, dataset_id: str) -> list[tuple[str, str, str]]:
    """Every unit of the dataset's vector collection: (id, text, attempt)."""
    table = _table(vectors_of(dataset_id))
    async with node.container.engine.connect() as conn:
        exists = (await conn.execute(text("SELECT to_regclass(:t)"), {"t": table})).scalar()
        if exists is None:
            return []
        rows = await conn.execute(text(f"SELECT id, text, meta->>'attempt' FROM {table}"
                                       " ORDER BY id"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def read_model(node: Node, dataset_id: str) -> list[Any]:
    async with node.container.engine.connect() as conn:
        docs = (await conn.execute(text(
            "SELECT * FROM console_v1.documents WHERE dataset_id = :d ORDER BY id"),
            {"d": dataset_id})).all()
        segments = (await conn.execute(text(
            "SELECT * FROM console_v1.segments WHERE dataset_id = :d ORDER BY id"),
            {"d": dataset_id})).all()
    return [*docs, *segments]


async def log_end(node: Node) -> int:
    async with node.container.engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT coalesce(max(notification_id), 0) FROM stored_events"))).scalar() or 0)


async def indexed_dataset(node: Node) -> tuple[dict[str, str], str, str]:
    """A dataset with two indexed documents, one segment edited and one added by hand,
    beside another dataset; returns (key, dataset id, other dataset id)."""
    key = await dataset_key(node)
    dataset = await create_dataset(node, key, "Replayed")
    other = await create_dataset(node, key, "Bystander")
    batches = [await create_text_document(node, key, dataset["id"], f"facts-{i}",
                                          "\n\n".join(f for f, _ in FACTS[i * 3:i * 3 + 3]))
               for i in range(2)]
    bystander = await create_text_document(node, key, other["id"], "other", FACTS[7][0])
    for created in batches:
        await wait_indexed(node.client, key, dataset["id"], created["batch"])
    await wait_indexed(node.client, key, other["id"], bystander["batch"])
    base = f"/v1/datasets/{dataset['id']}/documents/{batches[0]['document']['id']}/segments"
    first = (await node.client.get(base, headers=key)).json()["data"][0]
    edited = "Penguins in the zoo are fed sardines twice a day by the aquarium staff."
    assert (await node.client.post(f"{base}/{first['id']}", headers=key, json={
        "segment": {"content": edited}})).status_code == 200
    assert (await node.client.post(base, headers=key, json={"segments": [
        {"content": "The parking garage closes at midnight."}]})).status_code == 200

    async def settled() -> bool:
        units = await index_snapshot(node, dataset["id"])
        return len(units) == 7 and any(u[1] == edited for u in units)

    await eventually(settled)
    await quiet(node)
    return key, dataset["id"], other["id"]


async def quiet(node: Node) -> None:
    """Until nothing is being recorded and the read model has caught up with the log."""
    engine, last = node.container.engine, -1

    async def still() -> bool:
        nonlocal last
        end, lag = await log_end(node), await relay_lag(engine)
        lag += sum((await maintained_lags(engine, node.container.projections.values())).values())
        settled, last = end == last and lag == 0, end
        return settled

    await eventually(still, interval=0.5)


async def test_replaying_a_dataset_to_its_indexing_group_rebuilds_its_index_exactly(
        settings: Settings) -> None:
    async with running_node(settings) as node:
        _, dataset_id, other_id = await indexed_dataset(node)
        before, model, end = (await index_snapshot(node, dataset_id),
                              await read_model(node, dataset_id), await log_end(node))
        other_before = await index_snapshot(node, other_id)

        # dry run: counts only the dataset's events the group reads; sends nothing
        code, out, err = await eddy("events", "replay", "--dataset", dataset_id, "--group",
                                    INDEXING_PRIORITY.name, "--dry-run", "--json")
        assert code == 0, err
        [dry] = json_lines(out)
        # two indexing requests, the edit and the segment added by hand (small: priority)
        assert dry["by_type"] == {"DocumentIndexingRequested": 2, "SegmentCreated": 1,
                                  "SegmentUpdated": 1}
        assert dry["by_group"] == {INDEXING_PRIORITY.name: 4} and dry["dry_run"] is True
        code, out, _ = await eddy("events", "replay", "--dataset", dataset_id, "--republish",
                                  "--dry-run")
        assert code == 0 and "projection.console" in out and INDEXING_PRIORITY.name in out

        # the index is lost; the replay rebuilds it unit for unit
        await node.container.vectors.delete(vectors_of(dataset_id))
        assert await index_snapshot(node, dataset_id) == []
        code, out, err = await eddy("events", "replay", "--dataset", dataset_id, "--group",
                                    INDEXING_PRIORITY.name, "--json")
        assert code == 0, err
        assert json_lines(out)[0]["by_group"] == {INDEXING_PRIORITY.name: 4}
        await eventually(lambda: _equals(index_snapshot(node, dataset_id), before))

        # again, to every group (projections too), after losing one document's units
        first_doc = (await read_model(node, dataset_id))[0].id
        await node.container.vectors.delete_by_document_id(
            vectors_of(dataset_id), str(first_doc))
        code, _, err = await eddy("events", "replay", "--dataset", dataset_id, "--republish")
        assert code == 0, err
        await eventually(lambda: _equals(index_snapshot(node, dataset_id), before))
        await quiet(node)
        # nothing duplicated, nothing recorded, the read model and the other dataset unchanged
        assert await index_snapshot(node, dataset_id) == before
        assert await log_end(node) == end
        assert await read_model(node, dataset_id) == model
        assert await index_snapshot(node, other_id) == other_before

        # bad input changes nothing
        code, _, err = await eddy("events", "replay", "--group", "nope", "--dry-run")
        assert code == 2 and "unknown consumer group 'nope'" in err


async def _equals(snapshot: Any, expected: Any) -> bool:
    return bool(await snapshot == expected)


def replayed(group: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("eddy_replayed_messages_total",
                                     {"group": group, "outcome": outcome}) or 0.0


@contextlib.asynccontextmanager
async def side_effecting_indexers(node: Node) -> AsyncIterator[None]:
    """The real indexing processors, declared side-effecting (as a mail or webhook
    processor is), run as the worker runs them."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_processor(
        node.container.bus, replace(work_processor(node.container, lane), side_effects=True),
        "indexer", stop)) for lane in (INDEXING_PRIORITY, INDEXING_BULK)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=15)


async def test_a_replay_never_repeats_side_effects_unless_allowed(settings: Settings) -> None:
    async with running_node(settings, roles=BACKBONE) as node, side_effecting_indexers(node):
        _, dataset_id, _ = await indexed_dataset(node)  # live events: handled as usual
        before, end = await index_snapshot(node, dataset_id), await log_end(node)
        await node.container.vectors.delete(vectors_of(dataset_id))

        skipped = replayed(INDEXING_PRIORITY.name, "skipped")
        code, _, err = await eddy("events", "replay", "--dataset", dataset_id, "--group",
                                  INDEXING_PRIORITY.name)
        assert code == 0, err
        await eventually(lambda: _at_least(replayed(INDEXING_PRIORITY.name, "skipped"),
                                           skipped + 4))
        await asyncio.sleep(1.0)
        assert await index_snapshot(node, dataset_id) == []  # acknowledged, not acted on

        code, _, err = await eddy("events", "replay", "--dataset", dataset_id, "--group",
                                  INDEXING_PRIORITY.name, "--allow-side-effects")
        assert code == 0, err
        await eventually(lambda: _equals(index_snapshot(node, dataset_id), before))
        assert await log_end(node) == end


async def _at_least(value: float, floor: float) -> bool:
    return value >= floor
