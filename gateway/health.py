"""Liveness and readiness: database, Redis, bus, and how far projections and the relay lag.

A lag above zero that has not shrunk for HEALTH_LAG_STALL_SECONDS means its consumer is
stuck (or hopelessly behind): /health then says "degraded" and marks that check "stalled"
(503). So is the consumers check when a consumer group's unacknowledged messages wait, that
long, in partitions no live member owns (its workers died or stalled).

A parked event (`projections/parking.py`: an apply that failed for good) is no such thing:
its aggregate waits for an operator, the rest goes on, and restarting Eddy would not fix it.
The projections check then says "parked"; /health says "degraded" but answers 200, so a
liveness probe does not restart Eddy in a loop over a data problem.

/health and /ready answer anyone, so they show each check's state only ("ok", "down",
"stalled", "parked"); the details (errors, which may name hosts, ports and users; lags,
parked events, stalled groups and the way out) are on the authenticated status page
(gateway/status.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from events.consumer_groups import group_lags
from gateway.deps import get_container
from projections.progress import relay_lag
from projections.versions import status as projection_status

router = APIRouter()

PARKED = "parked"  # a check's status that needs an operator, not a restart


class LagWatch:
    """Remembers, per lag, since when it has been above zero without shrinking."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._since: dict[str, tuple[float, int]] = {}  # name -> (since, lag then)

    def stalled(self, name: str, lag: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        start = self._since.get(name)
        if lag == 0 or start is None or lag < start[1]:
            # caught up, first seen, or shrinking: a new window starts here
            if lag == 0:
                self._since.pop(name, None)
            else:
                self._since[name] = (now, lag)
            return False
        return now - start[0] >= self.window


def _lag_watch(request: Request) -> LagWatch:
    state = request.app.state
    if not hasattr(state, "lag_watch"):
        state.lag_watch = LagWatch(get_container(request).settings.HEALTH_LAG_STALL_SECONDS)
    return state.lag_watch  # type: ignore[no-any-return]


async def _check(name: str, probe: Any) -> tuple[str, dict[str, Any]]:
    try:
        detail = await asyncio.wait_for(probe, timeout=3)
        return name, {"status": detail.pop("status", "ok") if detail else "ok", **(detail or {})}
    except Exception as exc:
        return name, {"status": "down", "error": repr(exc)[:300]}


async def dependency_checks(request: Request) -> dict[str, dict[str, Any]]:
    c = get_container(request)
    watch = _lag_watch(request)

    async def database() -> None:
        async with c.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def kv() -> None:
        await c.kv.ping()

    async def bus() -> dict[str, Any]:
        await c.bus.ping()
        return {"kind": c.settings.bus.value}

    async def projections() -> dict[str, Any]:
        found = await projection_status(c.engine, c.projections.values())
        lags = {s.version.schema: s.lag_events for s in found if s.lag_events is not None}
        stalled = sorted(n for n, lag in lags.items() if watch.stalled(f"projection:{n}", lag))
        if stalled:
            return {"lag": lags, "status": "stalled", "stalled": stalled}
        parked = {s.version.schema: len(s.parked) for s in found if s.parked}
        if parked:
            return {"lag": lags, "status": PARKED, "parked": parked,
                    "waiting": {s.version.schema: s.waiting_events for s in found if s.parked},
                    "reason": "events whose apply failed for good are parked, their "
                              "aggregates wait: see `eddy projections status`, then `eddy "
                              "dlq replay` (after a fix) or `eddy dlq drop` (skip)"}
        return {"lag": lags}

    async def relay() -> dict[str, Any]:
        lag = await relay_lag(c.engine)
        return {"lag": lag, **({"status": "stalled"} if watch.stalled("relay", lag) else {})}

    async def consumers() -> dict[str, Any]:
        groups = list((await group_lags(c.engine)).values())
        states = await asyncio.gather(*(c.bus.group_state(g.name, g.topics) for g in groups))
        stalled = []
        for group, state in zip(groups, states, strict=True):
            owned = {tp for parts in state.members.values() for tp in parts}
            orphaned = state.oldest_unacked is not None and any(
                tp not in owned for tp in group.partition_lag)
            if watch.stalled(f"group:{group.name}", int(orphaned)):
                stalled.append(group.name)
        return {"status": "stalled", "stalled": sorted(stalled)} if stalled else {}

    results = await asyncio.gather(
        _check("database", database()), _check("redis", kv()), _check("bus", bus()),
        _check("projections", projections()), _check("relay", relay()),
        _check("consumers", consumers()),
    )
    return dict(results)


def _states(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    checks = _states(await dependency_checks(request))
    ok = all(state == "ok" for state in checks.values())
    failing = any(state not in ("ok", PARKED) for state in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks},
                        status_code=503 if failing else 200)


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    checks = _states(await dependency_checks(request))
    serving = all(checks[k] == "ok" for k in ("database", "redis", "bus"))
    return JSONResponse({"ready": serving, "checks": checks}, status_code=200 if serving else 503)
