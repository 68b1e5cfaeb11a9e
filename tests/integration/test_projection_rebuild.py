"""Projection rebuild without downtime, on a running node (gateway and workers in process).

While apps and documents keep being written and the Service API and console keep being
read, the console read model is rebuilt into console_v2 (layout 2: datasets keep their
document counts) and reads switch to it: no read fails or shows fewer apps or documents
than the one before it, and v2 equals v1 row for row apart from the new columns. Rollback
switches back; drop removes the old schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from projections import versions as pv
from projections.layout import newest_layout
from projections.rebuild import Progress, rebuild
from projections.tables import PROJECTION_NAME, metadata
from tests.e2e.test_knowledge import create_dataset, create_text_document, dataset_key
from tests.harness import Node, eventually, node_settings, running_node

TEXT = "First paragraph about rivers.\n\nSecond paragraph about lakes and seas."


class Traffic:
    """Writers and readers running until stopped; every read must answer 200 and never
    show fewer apps or documents than the reader saw before."""

    def __init__(self, node: Node, auth: dict[str, str], key: dict[str, str],
                 dataset_id: str) -> None:
        self.node, self.auth, self.key, self.dataset_id = node, auth, key, dataset_id
        self.stop = asyncio.Event()
        self.reads = 0
        self.writes = 0
        self.failures: list[str] = []

    async def write(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            r = await self.node.client.post("/console/api/apps", headers=self.auth, json={
                "name": f"app {n}", "mode": "chat"})
            if r.status_code != 201:
                self.failures.append(f"create app: {r.status_code} {r.text[:200]}")
            if n % 3 == 0:
                await create_text_document(self.node, self.key, self.dataset_id,
                                           f"doc {n}", TEXT, indexing_technique="economy")
            self.writes += 1

    async def read(self) -> None:
        seen_apps = seen_docs = seen_words = 0
        while not self.stop.is_set():
            apps = await self.node.client.get("/console/api/apps?page=1&limit=1",
                                              headers=self.auth)
            dataset = await self.node.client.get(f"/v1/datasets/{self.dataset_id}",
                                                 headers=self.key)
            listed = await self.node.client.get("/v1/datasets?page=1&limit=20",
                                                headers=self.key)
            for r in (apps, dataset, listed):
                if r.status_code != 200:
                    self.failures.append(f"{r.request.url}: {r.status_code} {r.text[:200]}")
            if self.failures:
                return
            total, body = apps.json()["total"], dataset.json()
            if total < seen_apps or body["document_count"] < seen_docs \
                    or body["word_count"] < seen_words:
                self.failures.append(f"went backwards: apps {seen_apps}->{total}, documents "
                                     f"{seen_docs}->{body['document_count']}, words "
                                     f"{seen_words}->{body['word_count']}")
            seen_apps, seen_docs, seen_words = total, body["document_count"], body["word_count"]
            self.reads += 1


async def _rows(node: Node, schema: str, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    quoted = ", ".join(f'"{c}"' for c in columns)
    async with node.container.read_models.database.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(
            f'SELECT {quoted} FROM "{schema}"."{table}" ORDER BY {quoted}'))).all()]


async def _columns(node: Node, schema: str) -> dict[str, list[str]]:
    async with node.container.read_models.database.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = :s ORDER BY table_name, ordinal_position"),
            {"s": schema})).all()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


async def test_rebuild_switch_rollback_and_drop_under_continuous_writes_and_reads(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str) -> None:
    settings = node_settings(postgres, fresh_database("rebuild"), redis_url)
    async with running_node(settings) as node:
        c = node.container
        key = await dataset_key(node)
        auth = await node.console_login()
        dataset = await create_dataset(node, key, "rivers", technique="economy")
        for i in range(3):
            await create_text_document(node, key, dataset["id"], f"seed {i}", TEXT,
                                       indexing_technique="economy")
        traffic = Traffic(node, auth, key, dataset["id"])
        tasks = [asyncio.create_task(traffic.write()),
                 *(asyncio.create_task(traffic.read()) for _ in range(2))]
        progress: list[Progress] = []
        try:
            await asyncio.sleep(1.0)
            result = await rebuild(c.read_models.database, settings.database_dsn(), c.store,
                                   c.event_types, c.projections[PROJECTION_NAME],
                                   progress.append)
            v2 = result.version
            assert (v2.schema, v2.layout, v2.state) == ("console_v2", newest_layout(metadata),
                                                        pv.LIVE)
            assert result.events_loaded > 0 and result.rows["apps"] > 0
            assert progress and progress[-1].rate > 0
            assert c.read_models.active().schema == "console_v1"  # not switched by itself
            reads_before = traffic.reads
            await pv.switch(c.read_models.database, PROJECTION_NAME, 2)
            await eventually(lambda: asyncio.sleep(0, c.read_models.active().schema
                                                   == "console_v2"), timeout=5)
            await eventually(lambda: asyncio.sleep(0, traffic.reads > reads_before + 5))
            await pv.rollback(c.read_models.database, PROJECTION_NAME)
            await eventually(lambda: asyncio.sleep(0, c.read_models.active().schema
                                                   == "console_v1"), timeout=5)
            reads_before = traffic.reads
            await eventually(lambda: asyncio.sleep(0, traffic.reads > reads_before + 5))
            await pv.switch(c.read_models.database, PROJECTION_NAME, 2)
            await asyncio.sleep(0.5)
        finally:
            traffic.stop.set()
            await asyncio.gather(*tasks)
        assert not traffic.failures, traffic.failures[:5]
        assert traffic.writes > 5 and traffic.reads > 10

        async def settled() -> bool:
            lags = await pv.maintained_lags(c.engine, [c.projections[PROJECTION_NAME]])
            return lags == {"console_v1": 0, "console_v2": 0}
        await eventually(settled, timeout=30)

        v1_tables, v2_tables = await _columns(node, "console_v1"), await _columns(node,
                                                                                "console_v2")
        assert v1_tables.keys() == v2_tables.keys()
        for table, columns in v1_tables.items():
            assert await _rows(node, "console_v2", table, columns) == \
                await _rows(node, "console_v1", table, columns), table
        new_columns = {t: [c for c in cs if c not in v1_tables[t]] for t, cs in v2_tables.items()}
        assert {t: cs for t, cs in new_columns.items() if cs} == {
            "datasets": ["document_count", "word_count", "available_document_count"]}

        # The new columns hold what layout 1 counts on every read; the API answers from them.
        async with c.read_models.database.connect() as conn:
            counted = (await conn.execute(text(
                "SELECT count(*), coalesce(sum(word_count), 0) FROM console_v2.documents"
                " WHERE dataset_id = :d"), {"d": dataset["id"]})).one()
            kept = (await conn.execute(text(
                "SELECT document_count, word_count FROM console_v2.datasets WHERE id = :d"),
                {"d": dataset["id"]})).one()
        assert tuple(kept) == tuple(counted) and counted[0] >= 3
        answer = (await node.client.get(f"/v1/datasets/{dataset['id']}", headers=key)).json()
        assert (answer["document_count"], answer["word_count"]) == tuple(counted)

        # Drop: the active version cannot go; the old one goes with its tracking.
        try:
            await pv.drop(c.read_models.database, PROJECTION_NAME, 2)
            raise AssertionError("dropped the active version")
        except pv.VersionRefused:
            pass
        await pv.drop(c.read_models.database, PROJECTION_NAME, 1)
        async with c.read_models.database.connect() as conn:
            schemas = set((await conn.execute(text(
                "SELECT schema_name FROM information_schema.schemata"))).scalars())
            tracked = (await conn.execute(text(
                "SELECT count(*) FROM projection_tracking WHERE projection = 'console_v1'"
            ))).scalar()
        assert "console_v1" not in schemas and "console_v2" in schemas and tracked == 0
        # Still answering, and still projecting, from v2 alone.
        r = await node.client.post("/console/api/apps", headers=auth,
                                   json={"name": "after drop", "mode": "chat"})
        assert r.status_code == 201, r.text
        listed = await node.client.get("/console/api/apps?page=1&limit=100", headers=auth)
        assert "after drop" in [a["name"] for a in listed.json()["data"]]
