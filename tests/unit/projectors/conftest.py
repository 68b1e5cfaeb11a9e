"""The `world` a projector test applies events in: an empty read model in SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from projections.tables import READ, account_credentials, metadata, workspace_keys
from tests.unit.projectors.harness import (
    READ_TABLES,
    World,
)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    engine = engine.execution_options(schema_translate_map={READ: None})
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all,
                            tables=[*READ_TABLES, account_credentials, workspace_keys])
    yield World(engine)
    await engine.dispose()
