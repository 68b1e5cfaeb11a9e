"""What the console's monitoring routes share (`gateway/conversation/statistics.py`,
`gateway/workflow/statistics.py`): the app and range a route reads, from the statistics
projection, and Dify's list shape and averaging."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import Query, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth import ConsoleUser
from gateway.deps import get_container, parse_id
from gateway.platform.console import console_app
from projections.platform import queries as platform_queries
from projections.statistics import queries
from projections.statistics.tables import STATISTICS
from schemas.errors import AppNotFound

# Dify's `start`/`end`: `YYYY-MM-DD HH:MM` in the account's timezone, empty meaning none
RangeEdge = Annotated[str | None, Query()]
HUNDREDTHS = Decimal("0.01")


@dataclass(frozen=True)
class Statistics:
    """What a statistics route reads: the app, the statistics read model, the range."""

    app_id: UUID
    engine: AsyncEngine
    span: queries.TimeRange


async def statistics_of(request: Request, user: ConsoleUser, app_id: str, start: str | None,
                        end: str | None, modes: tuple[str, ...] = ()) -> Statistics:
    """The workspace's app in the path (of one of `modes`, when given: Dify's get_app_model)
    and the range in the account's timezone (Dify's parse_time_range: a 400 when bad)."""
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    if modes and app["mode"] not in modes:
        listed = ", ".join(f"'{m}'" for m in modes)
        raise AppNotFound(f"App mode is not in the supported list: {{{listed}}}")
    c = get_container(request)
    timezone = await platform_queries.account_timezone(c.engine, user.account_id) or "UTC"
    span = queries.parse_time_range(start, end, timezone)
    return Statistics(app["id"], c.read_models.engine_for(c.read_models.active(STATISTICS)),
                      span)


def listed(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": rows}


def average(total: int, count: int) -> float:
    """Dify's `float(AVG(…).quantize(Decimal("0.01")))` (half to even) of integer counts."""
    return float((Decimal(total) / Decimal(count)).quantize(HUNDREDTHS))
