"""Liveness and readiness: database, Redis, bus, and how far projections and the relay lag."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway.deps import get_container
from projections.progress import measure_lag

router = APIRouter()


async def _check(name: str, probe: Any) -> tuple[str, dict[str, Any]]:
    try:
        detail = await asyncio.wait_for(probe, timeout=3)
        return name, {"status": "ok", **(detail or {})}
    except Exception as exc:
        return name, {"status": "error", "error": repr(exc)[:300]}


async def _checks(request: Request) -> dict[str, dict[str, Any]]:
    c = get_container(request)

    async def database() -> None:
        async with c.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await c.redis.ping()

    async def bus() -> dict[str, Any]:
        await c.bus.ping()
        return {"kind": c.settings.bus.value}

    async def projections() -> dict[str, Any]:
        return {"lag": {p.name: await measure_lag(c.engine, p.name, list(p.aggregate_types))
                        for p in c.projections.values()}}

    async def relay() -> dict[str, Any]:
        async with c.engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT (SELECT coalesce(max(notification_id), 0) FROM stored_events)"
                " - coalesce((SELECT position FROM relay_positions WHERE name = 'relay'), 0)"
            ))).scalar()
        return {"lag": int(row or 0)}

    results = await asyncio.gather(
        _check("database", database()), _check("redis", redis()), _check("bus", bus()),
        _check("projections", projections()), _check("relay", relay()),
    )
    return dict(results)


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    checks = await _checks(request)
    ok = all(v["status"] == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    checks = await _checks(request)
    serving = all(checks[k]["status"] == "ok" for k in ("database", "redis", "bus"))
    return JSONResponse({"ready": serving, "checks": checks}, status_code=200 if serving else 503)
