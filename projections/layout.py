"""Read-model layouts: which tables and columns a version of a projection has.

Each version of a projection lives in its own Postgres schema (`console_v1`, `console_v2`),
mapped from the logical schema `read` by SQLAlchemy's `schema_translate_map`. A table or
column added after layout 1 says since when in its `info` (`info=since(2)`): a version built
with an older layout does not have it, so projectors write it and queries read it only where
the version's layout has it. Each projection has its own layouts, those of its own tables
(`Projection.metadata`): a rebuild builds the newest its tables declare; the versions left
behind keep working with theirs (rollback).

Engines for a version carry its layout as the execution option `eddy_layout`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections.tables import READ

LAYOUT_OPTION = "eddy_layout"
BULK_LOAD_OPTION = "eddy_bulk_load"  # set on the connection a rebuild folds events with
FIRST_LAYOUT = 1


def since(layout: int) -> dict[str, int]:
    """`info` of a table or column that versions get from this layout on."""
    return {"since_layout": layout}


def introduced(item: Table | Column[Any]) -> int:
    return int(item.info.get("since_layout", FIRST_LAYOUT))


def read_tables(metadata: MetaData) -> list[Table]:
    """The read-model tables (logical schema `read`), in dependency order."""
    return [t for t in metadata.sorted_tables if t.schema == READ]


def newest_layout(metadata: MetaData) -> int:
    """The layout this code writes: the newest any read-model table or column declares."""
    return max([FIRST_LAYOUT] + [introduced(x) for t in read_tables(metadata)
                                 for x in (t, *t.columns)])


def columns_in(table: Table, layout: int) -> list[Column[Any]]:
    return [c for c in table.columns if introduced(c) <= layout]


def version_engine(engine: AsyncEngine, schema: str, layout: int) -> AsyncEngine:
    """`engine` reading and writing the read model of one version (same connection pool)."""
    return engine.execution_options(schema_translate_map={READ: schema},
                                    **{LAYOUT_OPTION: layout})


def _options(bind: AsyncEngine | AsyncConnection | Any) -> Any:
    # projectors get an AsyncConnection, or a synchronous one in a rebuild's bulk load;
    # queries get an AsyncEngine
    return (bind.sync_connection if isinstance(bind, AsyncConnection) else bind
            ).get_execution_options()


def layout_of(bind: AsyncEngine | AsyncConnection | Any) -> int:
    """The layout of the version an engine or connection is mapped to."""
    return int(_options(bind).get(LAYOUT_OPTION, FIRST_LAYOUT))


def has(bind: AsyncEngine | AsyncConnection | Any, column: Column[Any]) -> bool:
    """Whether the version `bind` is mapped to has this column."""
    return layout_of(bind) >= introduced(column)


def in_bulk_load(bind: AsyncEngine | AsyncConnection | Any) -> bool:
    """Whether projectors run in a rebuild's bulk load (one writer, store order): work that
    can be done once at its end (`projectors(..., after_bulk_load=...)`) may be skipped."""
    return bool(_options(bind).get(BULK_LOAD_OPTION, False))
