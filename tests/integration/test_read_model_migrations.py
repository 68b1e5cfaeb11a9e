"""A migration changing read-model tables reaches every version of the read model."""

from __future__ import annotations

import asyncio

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import create_engine, text

from config import Settings
from migrations.read_models import read_model_schemas
from projections.tables import PROJECTION_NAME
from tests.harness import migrate


async def test_read_model_schemas_lists_every_version(settings: Settings) -> None:
    await asyncio.to_thread(migrate, settings)
    engine = create_engine(settings.database_dsn().replace("postgresql://",
                                                           "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            assert read_model_schemas(conn, PROJECTION_NAME) == ["console_v1"]
            conn.execute(text(
                "INSERT INTO projection_versions (projection, version, schema_name, layout,"
                " state) VALUES ('console', 2, 'console_v2', 2, 'live')"))
            conn.execute(text("CREATE SCHEMA console_v2"))
            conn.execute(text("CREATE TABLE console_v2.apps (LIKE console_v1.apps)"))
            op = Operations(MigrationContext.configure(conn))
            for schema in read_model_schemas(op.get_bind(), PROJECTION_NAME):
                op.execute(f"ALTER TABLE {schema}.apps ADD COLUMN rating integer")
            found = set(conn.execute(text(
                "SELECT table_schema FROM information_schema.columns"
                " WHERE table_name = 'apps' AND column_name = 'rating'")).scalars())
        assert found == {"console_v1", "console_v2"}
    finally:
        engine.dispose()
