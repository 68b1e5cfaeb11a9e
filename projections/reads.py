"""Connections for reads on the hot paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose statements run without BEGIN and ROLLBACK around them: two round
    trips fewer per read. For one statement (or several that need no common snapshot)
    nothing changes: under READ COMMITTED each statement sees its own snapshot anyway."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")
