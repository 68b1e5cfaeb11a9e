"""`GET /metrics` in Prometheus text format.

Counted as they happen (process-wide registry): HTTP latency by route template, command
outcomes as the gateway sees them, and whatever in-process workers observe
(`workers/runtime.py`). Measured at scrape time from Postgres (and Redis for dead letters):
relay and projection lag, the event log's length, dead letters waiting per topic.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import text

from adapters.bus.redis_streams import RedisStreamsBus
from events.consumer_groups import group_lags
from gateway.container import GatewayContainer
from gateway.deps import get_container
from projections.parking import parked_events
from projections.progress import relay_lag
from projections.versions import maintained_lags
from schemas.topics import DEAD_LETTER_SUFFIX

router = APIRouter()

HTTP_REQUEST_SECONDS = Histogram(
    "eddy_http_request_duration_seconds", "HTTP request latency",
    ["method", "route", "status"])
COMMAND_OUTCOMES = Counter(
    "eddy_command_outcomes_total", "Command outcomes the gateway waited for",
    ["command_type", "status"])

_LOG_END = text("SELECT coalesce(max(notification_id), 0) FROM stored_events")


def route_template(request: Request) -> str:
    """The matched route's path template (`/console/api/apps/{app_id}`), never the raw path
    (unbounded label values); `unmatched` for a 404 no route took."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def observe_request(request: Request, status: int, seconds: float) -> None:
    HTTP_REQUEST_SECONDS.labels(request.method, route_template(request), str(status)).observe(
        seconds)


async def _scrape_time(c: GatewayContainer) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    async with c.engine.connect() as conn:
        high = (await conn.execute(_LOG_END)).scalar_one()
    Gauge("eddy_events_appended", "Events in the store (its highest position)",
          registry=registry).set(int(high))
    Gauge("eddy_relay_lag_events", "Stored events the relay has not published yet",
          registry=registry).set(await relay_lag(c.engine))
    lag = Gauge("eddy_projection_lag_events", "Events a projection has not applied yet",
                ["projection"], registry=registry)
    for version, events in (await maintained_lags(c.engine, c.projections.values())).items():
        lag.labels(version).set(events)
    parked = Gauge("eddy_projection_parked_events",
                   "Events a projection version parked (an apply failed for good): they wait "
                   "for an operator (eddy dlq replay | drop)", ["projection"], registry=registry)
    for event in await parked_events(c.engine):
        parked.labels(event.projection).inc()
    groups = await group_lags(c.engine)
    group_lag = Gauge("eddy_group_lag_events", "Relayed events a consumer group has not handled",
                      ["group"], registry=registry)
    handled = Gauge("eddy_group_events_handled", "Relayed events a consumer group has handled "
                    "(rate() of it is its throughput, from any process)", ["group"],
                    registry=registry)
    for g in groups.values():
        group_lag.labels(g.name).set(g.lag)
        handled.labels(g.name).set(g.handled)
    if isinstance(c.bus, RedisStreamsBus):
        dead = Gauge("eddy_dead_letters", "Messages parked on a topic's dead-letter topic",
                     ["topic"], registry=registry)
        for topic, count in (await dead_letters(c.bus)).items():
            dead.labels(topic).set(count)
    return registry


async def dead_letters(bus: RedisStreamsBus) -> dict[str, int]:
    """Per source topic, XLEN summed over its `.dlq` topic's partition streams."""
    topics = await bus.client.hgetall(bus.topics_key)
    names = {(k.decode() if isinstance(k, bytes) else k): int(n) for k, n in topics.items()}
    dlqs = {name: n for name, n in names.items() if name.endswith(DEAD_LETTER_SUFFIX)}
    async with bus.client.pipeline(transaction=False) as pipe:
        for dlq, partitions in dlqs.items():
            for partition in range(partitions):
                pipe.xlen(bus.stream_name(dlq, partition))
        lengths = iter(await pipe.execute())
    return {dlq.removesuffix(DEAD_LETTER_SUFFIX): sum(next(lengths) for _ in range(n))
            for dlq, n in dlqs.items()}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    scraped = await _scrape_time(get_container(request))
    return Response(generate_latest(REGISTRY) + generate_latest(scraped),
                    media_type=CONTENT_TYPE_LATEST)
