"""One way to connect to Redis, for every Redis user in Eddy (the bus, task streams, keys).

What a Redis restart or a burst of work must not do: fail requests on pooled connections
the restart left dead, or fail on the client's own pool running out. So a command that
meets a dead connection is retried a few times on a fresh one (within about a second, so
a real outage still surfaces quickly as a transient error), connections idle for a while
are checked before use, and a caller finding every pooled connection busy waits for one
instead of failing.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

POOL_WAIT_SECONDS = 10.0  # a caller waits this long for a free connection, then fails
HEALTH_CHECK_SECONDS = 15  # a connection idle longer than this is PINGed before use


def redis_client(url: str, *, max_connections: int, protocol: int | None = None
                 ) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=HEALTH_CHECK_SECONDS,
        **({"protocol": protocol} if protocol is not None else {}))
    return aioredis.Redis.from_pool(pool)
