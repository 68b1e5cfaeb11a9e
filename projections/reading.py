"""Connections for reads alone. A read on a plain `engine.connect()` costs three round trips
(BEGIN, the query, ROLLBACK when the connection goes back to the pool); in autocommit it
costs the query's one. Each statement still sees a consistent snapshot; statements of one
block see what was committed when each began, as they do under READ COMMITTED anyway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")
