"""An Eddy node without any server, for the unit tier: the real gateway app and workers on
the memory event store, bus, vectors and key-value store, the read model in SQLite
(`bootstrap.memory_node`), driven over ASGI like the e2e node (tests/harness.py).

The read side is SQLite files: the bookkeeping tables in the main database, each
projection's read model attached as its version's schema (`console_v1`, `statistics_v1`),
so queries run as they do on Postgres, through the version's schema mapping. Queries that
need Postgres-only SQL stay in tests/e2e.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bootstrap import ASSEMBLY, memory_node
from config import load_settings
from projections.layout import newest_layout, read_tables
from projections.tables import (
    READ,
    account_credentials,
    idempotency_keys,
    metadata,
    projection_tracking,
    projection_versions,
    workspace_keys,
)
from projections.versions import LIVE, schema_of
from tests.harness import Node, conforms_to_spec

# Each projection's first version, in a database file of its own attached as its schema.
VERSIONS = {name: schema_of(name, 1) for name in ASSEMBLY.projections}
BOOKKEEPING = [projection_versions, projection_tracking, idempotency_keys, account_credentials,
               workspace_keys]


def _engine(directory: Path) -> AsyncEngine:
    engine = create_async_engine(f"sqlite+aiosqlite:///{directory / 'read.db'}",
                                 connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _attach(dbapi_connection: Any, _record: Any) -> None:
        for schema in VERSIONS.values():
            dbapi_connection.execute(f"ATTACH DATABASE '{directory / schema}.db' AS {schema}")
        # Throwaway databases: no waiting for the disk on each commit.
        for schema in ("main", *VERSIONS.values()):
            dbapi_connection.execute(f"PRAGMA {schema}.journal_mode = WAL")
            dbapi_connection.execute(f"PRAGMA {schema}.synchronous = OFF")

    return engine


async def _create(directory: Path) -> None:
    engine = _engine(directory)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=BOOKKEEPING)
    for name, schema in VERSIONS.items():
        tables = ASSEMBLY.projections[name].metadata
        versioned = engine.execution_options(schema_translate_map={READ: schema})
        async with versioned.begin() as conn:
            await conn.run_sync(tables.create_all, tables=read_tables(tables))
        async with engine.begin() as conn:
            await conn.execute(insert(projection_versions).values(
                projection=name, version=1, schema_name=schema,
                layout=newest_layout(tables), state=LIVE, active=True,
                created_at=datetime.now(UTC)))
    await engine.dispose()  # the last connection closing folds the WAL into the files


_template: Path | None = None


async def sqlite_read_side(directory: Path) -> AsyncEngine:
    """A read-model database with every read-model table, its version registered active
    (copied from one made once per session: creating the tables is the slow part)."""
    global _template
    if _template is None:
        _template = Path(tempfile.mkdtemp(prefix="eddy-read-model-"))
        await _create(_template)
    for name in ("read.db", *(f"{schema}.db" for schema in VERSIONS.values())):
        shutil.copyfile(_template / name, directory / name)
    return _engine(directory)


@asynccontextmanager
async def memory_app(directory: Path, **overrides: Any) -> AsyncIterator[Node]:
    settings = load_settings(
        SECRET_KEY="test-secret-key-which-is-long-enough-for-hs256",
        EDDY_DATA_DIR=directory, EVENT_TOPIC_PREFIX=f"m{uuid.uuid4().hex[:8]}.",
        COMMAND_PARTITIONS=2, EVENT_PARTITIONS=2,
        COMMAND_TIMEOUT_SECONDS=10, PROJECTION_WAIT_SECONDS=10, **overrides)
    async with memory_node(settings, await sqlite_read_side(directory)) as (container, app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eddy.test",
                                     timeout=30,
                                     event_hooks={"response": [conforms_to_spec]}) as client:
            yield Node(container, client, app)
