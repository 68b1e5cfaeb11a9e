"""Versions of a projection: the registry (`projection_versions`), switching reads between
versions, and their status (`eddy projections list|status|switch|rollback|drop`, /status).

A version is a Postgres schema (`console_v2`) holding the whole read model, with its own
tracking name (the schema's name). Its state:

- `building`: a rebuild is bulk-loading it; nothing else touches it, nothing reads it.
- `catching_up`: loaded; the projection processor applies live events to it, and the
  rebuild applies what was appended since the load, from the event store.
- `live`: caught up and maintained by the projection processor with every event.
- `dropping`: `drop` is removing it; nothing applies to it any more.

Exactly one version per projection is `active`: reads use it. A switch is one transaction on
the registry, announced on `VERSIONS_CHANNEL`; every process maps reads to the active version
when it hears that (`ReadModels`), and re-reads the registry every few seconds anyway.

The processor applies each batch to the inactive maintained versions first, the active one
last, so any version is at least as far along as the active one: a switch or a rollback
never shows a reader an older state than it saw, and the previous version, maintained until
`drop`, can be switched back to at once. Each version applies in its own transaction and
parks its own failures (`projections/parking.py`), so one failing never holds another back;
a version with parked events cannot be switched to until they are resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.transient import is_transient
from events.listener import Notifications
from projections.layout import version_engine
from projections.parking import ParkedEvent, parked_events
from projections.progress import measure_backlog
from projections.reads import autocommit
from projections.registry import Projection
from projections.tables import PROJECTION_NAME, VERSIONS_CHANNEL, projection_versions

log = logging.getLogger(__name__)

BUILDING, CATCHING_UP, LIVE, DROPPING = "building", "catching_up", "live", "dropping"
MAINTAINED = (CATCHING_UP, LIVE)
REFRESH_SECONDS = 2.0  # a process re-reads the registry this often even without a NOTIFY
SWITCH_WAIT_SECONDS = 10.0
_LOCK_SPACE, _REGISTRY_LOCK = 0x45646479, 0x56455253  # "Eddy", "VERS"


class VersionNotFound(Exception):
    pass


class VersionRefused(Exception):
    """The operation would break reads or lose the way back (e.g. dropping the active
    version, switching to one still being built)."""


@dataclass(frozen=True)
class ProjectionVersion:
    projection: str
    version: int
    schema: str  # also its tracking name
    layout: int
    state: str
    active: bool
    built_position: int | None = None
    created_at: datetime | None = None
    built_at: datetime | None = None
    activated_at: datetime | None = None

    @property
    def maintained(self) -> bool:
        return self.state in MAINTAINED


@dataclass(frozen=True)
class VersionStatus:
    """A version and how far behind the event store it is (None while it is being built:
    the rebuild reports its own progress): events it will apply by itself (lag), its parked
    events, and the events waiting behind them (parked ones included)."""

    version: ProjectionVersion
    lag_events: int | None
    parked: tuple[ParkedEvent, ...] = ()
    waiting_events: int = 0


def schema_of(projection: str, version: int) -> str:
    return f"{projection}_v{version}"


def _row(r: Mapping[str, Any]) -> ProjectionVersion:
    return ProjectionVersion(
        projection=r["projection"], version=r["version"], schema=r["schema_name"],
        layout=r["layout"], state=r["state"], active=r["active"],
        built_position=r["built_position"], created_at=r["created_at"],
        built_at=r["built_at"], activated_at=r["activated_at"])


async def list_versions(engine: AsyncEngine | AsyncConnection,
                        projection: str | None = None) -> list[ProjectionVersion]:
    v = projection_versions.c
    query = select(projection_versions).order_by(v.projection, v.version)
    if projection is not None:
        query = query.where(v.projection == projection)
    if isinstance(engine, AsyncConnection):
        rows = (await engine.execute(query)).mappings().all()
    else:  # read per projection batch: no BEGIN and ROLLBACK around it
        async with autocommit(engine) as conn:
            rows = (await conn.execute(query)).mappings().all()
    return [_row(r) for r in rows]


async def maintained_versions(engine: AsyncEngine, projection: str) -> list[ProjectionVersion]:
    """The versions events must be applied to, the active one last (see the module doc)."""
    found = [v for v in await list_versions(engine, projection) if v.maintained]
    return sorted(found, key=lambda v: (v.active, v.version))


async def get_version(engine: AsyncEngine, projection: str, version: int) -> ProjectionVersion:
    for found in await list_versions(engine, projection):
        if found.version == version:
            return found
    raise VersionNotFound(f"{schema_of(projection, version)} does not exist")


async def _notify(conn: AsyncConnection, projection: str) -> None:
    await conn.execute(select(func.pg_notify(VERSIONS_CHANNEL, projection)))


async def begin_build(engine: AsyncEngine, projection: str, layout: int) -> ProjectionVersion:
    """Registers the next version as `building` (one rebuild at a time per projection)."""
    async with engine.begin() as conn:
        # one registration at a time, so two rebuilds cannot take the same number
        await conn.execute(select(func.pg_advisory_xact_lock(_LOCK_SPACE, _REGISTRY_LOCK)))
        existing = await list_versions(conn, projection)
        busy = [v.schema for v in existing if not v.active and v.state != LIVE]
        if busy:
            raise VersionRefused(f"{busy[0]} is still being rebuilt (or its rebuild stopped): "
                                 f"drop it first (eddy projections drop {projection} "
                                 f"{busy[0].rsplit('_v', 1)[1]})")
        number = max([v.version for v in existing], default=0) + 1
        await conn.execute(insert(projection_versions).values(
            projection=projection, version=number, schema_name=schema_of(projection, number),
            layout=layout, state=BUILDING, active=False, created_at=datetime.now(UTC)))
        await _notify(conn, projection)
    return await get_version(engine, projection, number)


async def set_state(engine: AsyncEngine, version: ProjectionVersion, state: str,
                    built_position: int | None = None) -> None:
    v = projection_versions.c
    values: dict[str, object] = {"state": state}
    if built_position is not None:
        values["built_position"] = built_position
    if state == LIVE:
        values["built_at"] = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(update(projection_versions).where(
            v.projection == version.projection, v.version == version.version).values(**values))
        await _notify(conn, version.projection)


async def _behind(engine: AsyncEngine, ahead: str, behind: str) -> int:
    """Aggregates the version `ahead` has applied further than `behind` has."""
    async with engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT count(*) FROM projection_tracking a LEFT JOIN projection_tracking b"
            "  ON b.projection = :behind AND b.aggregate_id = a.aggregate_id"
            " WHERE a.projection = :ahead AND coalesce(b.version, 0) < a.version"),
            {"ahead": ahead, "behind": behind})).scalar() or 0)


async def switch(engine: AsyncEngine, projection: str, version: int,
                 wait_seconds: float = SWITCH_WAIT_SECONDS) -> ProjectionVersion:
    """Makes `version` the one reads use, once it has applied everything the active one has
    (it is applied first, so this holds within a batch; waits up to `wait_seconds`)."""
    target = await get_version(engine, projection, version)
    if target.active:
        return target
    if target.state != LIVE:
        raise VersionRefused(f"{target.schema} is {target.state}: it can be switched to once "
                             "its rebuild has caught up")
    parked = await parked_events(engine, target.schema)
    if parked:
        raise VersionRefused(f"{target.schema} has {len(parked)} parked event(s) (eddy "
                             "projections status): replay or drop their dead letters first")
    current = next((v for v in await list_versions(engine, projection) if v.active), None)
    if current is not None:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while (missing := await _behind(engine, current.schema, target.schema)) > 0:
            if asyncio.get_running_loop().time() > deadline:
                raise VersionRefused(f"{target.schema} is behind {current.schema} on {missing} "
                                     "aggregates: is the projections worker running?")
            await asyncio.sleep(0.2)
    v = projection_versions.c
    async with engine.begin() as conn:
        await conn.execute(update(projection_versions).where(
            v.projection == projection, v.active).values(active=False))
        await conn.execute(update(projection_versions).where(
            v.projection == projection, v.version == version).values(
            active=True, activated_at=datetime.now(UTC)))
        await _notify(conn, projection)
    log.info("projection switched", extra={"projection": projection, "version": target.schema,
                                           "previous": current.schema if current else None})
    return await get_version(engine, projection, version)


async def rollback(engine: AsyncEngine, projection: str) -> ProjectionVersion:
    """Switches back to the version that was active before the current one."""
    found = await list_versions(engine, projection)
    previous = [v for v in found if not v.active and v.state == LIVE and v.activated_at]
    if not previous:
        raise VersionRefused(f"{projection} has no earlier live version to roll back to")
    return await switch(engine, projection,
                        max(previous, key=lambda v: v.activated_at or datetime.min).version)


async def drop(engine: AsyncEngine, projection: str, version: int) -> ProjectionVersion:
    """Removes a version that reads do not use: its schema, tracking and registry row."""
    target = await get_version(engine, projection, version)
    if target.active:
        raise VersionRefused(f"{target.schema} is active: switch to another version first")
    v = projection_versions.c
    async with engine.begin() as conn:
        await conn.execute(update(projection_versions).where(
            v.projection == projection, v.version == version).values(state=DROPPING))
        await _notify(conn, projection)  # processors stop applying to it
    async with engine.begin() as conn:
        # Waits for a processor's transaction still writing to it.
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE'))
        for table in ("projection_tracking", "projection_checkpoints", "projection_parked"):
            await conn.execute(text(f"DELETE FROM {table} WHERE projection = :p"),
                               {"p": target.schema})
        await conn.execute(projection_versions.delete().where(
            v.projection == projection, v.version == version))
        await _notify(conn, projection)
    log.info("projection version dropped", extra={"version": target.schema})
    return target


async def status(engine: AsyncEngine,
                 projections: Iterable[Projection]) -> list[VersionStatus]:
    """Every version of these projections with its lag and parked events (`eddy projections
    status`, /status, /health)."""
    result = []
    parked = await parked_events(engine)
    for projection in projections:
        for version in await list_versions(engine, projection.name):
            if not version.maintained:
                result.append(VersionStatus(version, None))
                continue
            backlog = await measure_backlog(engine, version.schema,
                                            list(projection.aggregate_types))
            result.append(VersionStatus(
                version, backlog.lag, tuple(p for p in parked if p.projection == version.schema),
                backlog.waiting))
    return result


async def maintained_lags(engine: AsyncEngine,
                          projections: Iterable[Projection]) -> dict[str, int]:
    """Lag of each maintained version, by its name (/health, /metrics, the scheduler)."""
    return {s.version.schema: s.lag_events for s in await status(engine, projections)
            if s.lag_events is not None}


class ReadModels:
    """The active version of each projection, as this process last heard, and engines mapped
    to versions. `engine` is what reads use: the logical schema mapped to the active version
    of the console projection."""

    def __init__(self, database: AsyncEngine) -> None:
        self.database = database  # no schema mapping of its own
        self._active: dict[str, ProjectionVersion] = {}
        self._engines: dict[tuple[str, int], AsyncEngine] = {}

    async def refresh(self) -> None:
        found = {v.projection: v for v in await list_versions(self.database) if v.active}
        changed = {p for p in found if self._active.get(p) != found[p]}
        self._active = found
        for projection in changed:
            log.info("reads use projection version", extra={
                "projection": projection, "version": found[projection].schema})

    def active(self, projection: str = PROJECTION_NAME) -> ProjectionVersion:
        try:
            return self._active[projection]
        except KeyError:
            raise VersionNotFound(f"{projection} has no active version "
                                  "(are the migrations applied?)") from None

    def engine_for(self, version: ProjectionVersion) -> AsyncEngine:
        key = (version.schema, version.layout)
        if key not in self._engines:
            self._engines[key] = version_engine(self.database, version.schema, version.layout)
        return self._engines[key]

    @property
    def engine(self) -> AsyncEngine:
        return self.engine_for(self.active())

    async def follow(self, stop: asyncio.Event, notifications: Notifications | None) -> None:
        """Re-reads the registry whenever a version changes (or every few seconds)."""
        while not stop.is_set():
            if notifications is not None:
                await notifications.wait(VERSIONS_CHANNEL, REFRESH_SECONDS)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # the database is down: reads fail anyway; keep the last known mapping
                log.warning("projection versions not refreshed", extra={"error": repr(exc)[:200]})
