"""Postgres LISTEN/NOTIFY as wake-up calls: waiters re-check their condition when woken.

A notification is only a hint (it can be missed across a reconnect), so every wait also
re-checks on a short timer. A lost connection (Postgres restarted) is re-established in the
background; until then waits rely on their timers.

Without a database (`dsn` None: one process, such as the unit tier) nothing is listened to;
the process's own writers `publish` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

import asyncpg

log = logging.getLogger(__name__)


class Heard:
    """Payloads heard on a channel that pass `wanted`, and an event set when one arrives."""

    def __init__(self, wanted: Callable[[str], bool]) -> None:
        self.wanted = wanted
        self.payloads: list[str] = []
        self.woken = asyncio.Event()

    def offer(self, payload: str) -> bool:
        if not self.wanted(payload):
            return False
        self.payloads.append(payload)
        return True

    async def next(self, timeout: float) -> bool:
        """Wait for a new payload (True) or the timeout (False)."""
        try:
            await asyncio.wait_for(self.woken.wait(), max(timeout, 0))
            return True
        except TimeoutError:
            return False
        finally:
            self.woken.clear()


class Notifications:
    def __init__(self, dsn: str | None, channels: list[str]) -> None:
        self.dsn = dsn
        self.channels = channels
        self._conn: asyncpg.Connection | None = None
        # channel -> waiters, each with a filter on the payload: a notification wakes only
        # the waiters it may concern (no thundering herd of re-checks).
        self._waiters: dict[str, dict[asyncio.Event, Callable[[str], bool]]] = defaultdict(dict)
        # channel -> callbacks for every notification, for the listener's life (caches)
        self._followers: dict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._gap_followers: list[Callable[[], None]] = []
        self._reconnecting: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        if self.dsn is None:
            return
        conn = await asyncpg.connect(self.dsn)
        for channel in self.channels:
            await conn.add_listener(channel, self._on_notify)
        conn.add_termination_listener(self._on_lost)
        self._conn = conn

    def _on_lost(self, _conn: object) -> None:
        if not self._stopped and self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        backoff = 0.2
        try:
            while not self._stopped:
                try:
                    await self.start()
                    log.info("notification listener reconnected")
                    for on_gap in self._gap_followers:
                        on_gap()
                    self._wake_all()  # whatever happened meanwhile: everyone re-checks
                    return
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("notification listener reconnecting",
                                extra={"error": repr(exc)[:200], "backoff": backoff})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
        finally:
            self._reconnecting = None

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def stop(self) -> None:
        self._stopped = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None

    def follow(self, channel: str, on_payload: Callable[[str], None],
               on_gap: Callable[[], None]) -> None:
        """Call `on_payload` with every notification on `channel` from now on, and `on_gap`
        after a reconnect (notifications may have been missed meanwhile)."""
        self._followers[channel].append(on_payload)
        self._gap_followers.append(on_gap)

    def publish(self, channel: str, payload: str) -> None:
        """A notification from this process (in-process listeners, `dsn` None)."""
        self._on_notify(None, 0, channel, payload)

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        for on_payload in self._followers[channel]:
            on_payload(payload)
        for event, concerns in self._waiters[channel].items():
            if concerns(payload):
                event.set()

    @contextlib.contextmanager
    def hearing(self, channel: str, heard: Heard) -> Iterator[Heard]:
        """Collect the notifications on `channel` that `heard` is interested in, from now
        until the block ends: opened before an action, nothing it causes can be missed."""
        self._waiters[channel][heard.woken] = heard.offer
        try:
            yield heard
        finally:
            self._waiters[channel].pop(heard.woken, None)

    @contextlib.contextmanager
    def alarm(self, channel: str) -> Iterator[asyncio.Event]:
        """An event set by every notification on `channel` until the block ends. A loop
        that clears it before re-checking misses none: a notification that comes while it
        checks (before it waits) has set it already."""
        woken = asyncio.Event()
        self._waiters[channel][woken] = lambda _: True
        try:
            yield woken
        finally:
            self._waiters[channel].pop(woken, None)

    async def wait(self, channel: str, timeout: float) -> None:
        """Sleep until a notification on `channel` or the timeout."""
        with self.alarm(channel) as woken, contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), timeout)
