"""The baseline `bench.commands` compares Eddy's create-app with: a bare FastAPI + asyncpg
endpoint doing Dify's synchronous CRUD write — INSERT the app row (committed), then SELECT
it back (SQLAlchemy's expire-on-commit reload) — with the same request model and response
view as Eddy's POST /console/api/apps, and no authentication.

Served by uvicorn in its own process, exactly as `eddy api` serves the gateway:

    BENCH_BASELINE_DSN=postgresql://... python -m uvicorn bench.baseline_app:app --port 8000
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request

from gateway.platform.views import app_view
from schemas.platform.api import CreateAppRequest

DSN_ENV = "BENCH_BASELINE_DSN"
POOL_ENV = "BENCH_BASELINE_POOL"

# The columns of Eddy's read-model `apps` table (projections/platform/tables.py), written
# out on purpose rather than derived from it or its migration: the baseline stands for a
# bare service with hand-written SQL, and lets the database fill the timestamps.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    name varchar(255) NOT NULL,
    mode varchar(32) NOT NULL,
    description text NOT NULL,
    icon_type varchar(16) NOT NULL,
    icon varchar(255) NOT NULL,
    icon_background varchar(32) NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_by uuid,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS apps_tenant_id ON apps (tenant_id);
"""
_INSERT = (
    "INSERT INTO apps (id, tenant_id, name, mode, description, icon_type, icon,"
    " icon_background, created_by, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
)
_SELECT = "SELECT * FROM apps WHERE id = $1 AND tenant_id = $2"

# One fixed workspace and author: the baseline does no authentication.
TENANT_ID = uuid.UUID("00000000-0000-4000-8000-00000000b001")
ACCOUNT_ID = uuid.UUID("00000000-0000-4000-8000-00000000b002")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ.get(POOL_ENV, "16"))
    pool = await asyncpg.create_pool(os.environ[DSN_ENV], min_size=size, max_size=size)
    try:
        await pool.execute(_SCHEMA)
        app.state.pool = pool
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=_lifespan)


@app.get("/health")
async def health(request: Request) -> dict[str, str]:
    await request.app.state.pool.fetchval("SELECT 1")
    return {"status": "ok"}


@app.post("/console/api/apps", status_code=201)
async def create_app(request: Request, body: CreateAppRequest) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    app_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(_INSERT, app_id, TENANT_ID, body.name, body.mode, body.description,
                           body.icon_type, body.icon, body.icon_background, ACCOUNT_ID)
        row = await conn.fetchrow(_SELECT, app_id, TENANT_ID)
    assert row is not None
    return app_view(dict(row))
