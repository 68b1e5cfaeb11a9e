"""Which failures are transient: the infrastructure was unreachable or asked us to try again
(connection refused or reset, timeouts, a server restarting, serialization failures).

Such failures are retried without limit and never dead-lettered; the gateway answers them
with 503 + Retry-After. Everything else is deterministic: retrying the same input fails
the same way. A service Eddy does not run that timed out is not transient either: it had
its deadline and retry budget (adapters/outside.py), its failure is final for the attempt.
"""

from __future__ import annotations

import asyncpg
import psycopg
import redis.exceptions
import sqlalchemy.exc
from aiokafka.errors import KafkaError
from eventsourcing import persistence

from adapters.outside import OutsideServiceError

_TRANSIENT: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.TooManyConnectionsError,
    psycopg.OperationalError,  # connection lost, pool timeout, serialization, deadlock
    psycopg.InterfaceError,
    persistence.OperationalError,
    persistence.InterfaceError,
    persistence.ConnectionUnavailableError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    sqlalchemy.exc.TimeoutError,  # pool checkout
    sqlalchemy.exc.OperationalError,  # the DBAPI's "the database's operation" errors
    sqlalchemy.exc.InterfaceError,
)


def is_transient(exc: BaseException) -> bool:
    """True when `exc`, or an error it wraps, is an infrastructure hiccup worth retrying."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OutsideServiceError):  # whatever timeout or reset it wraps
            return False
        if isinstance(current, _TRANSIENT):
            return True
        if isinstance(current, KafkaError) and current.retriable:
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            return current.errno is not None and current.errno in _NETWORK_ERRNOS
        wrapped = getattr(current, "orig", None)  # SQLAlchemy keeps the driver's error here
        current = (wrapped if isinstance(wrapped, BaseException)
                   else current.__cause__ or current.__context__)
    return False


# errno values of an unreachable peer (the OSError subclasses above cover most of them)
_NETWORK_ERRNOS = {111, 104, 110, 113, 101, 32, 103}  # ECONNREFUSED, ECONNRESET, ETIMEDOUT,
# EHOSTUNREACH, ENETUNREACH, EPIPE, ECONNABORTED
