"""Read-model reads a process keeps between uses: what every request reads before it does
anything (a console caller's identity; a Service API key, its app, the app's configuration
and model: `gateway/read_cache.py`) and what the chat processor reads per message (the
model and its credentials, the app's annotation reply setting) would otherwise cost a loaded
gateway or worker more than most else it does per message.

An entry goes when a projection notice names an aggregate it was read from; all go when
the listener reconnected (notices may have been missed) and when a read-model version
changes state (reads may move to another version). A read that a notice about one of its
sources raced is not kept. A notice reaches this process's followers before it wakes its
projection waiters, so a command this process waited for never leaves a stale entry behind
its answer; another gateway process may answer from the old row for as long as the notice
takes to reach it (milliseconds). Only rows that exist are kept: a miss (an unknown token,
a deleted app) is read again every time.

A process without a notification listener keeps nothing (nothing would evict).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from events.listener import Notifications
from projections.runner import PROJECTION_CHANNEL
from projections.tables import VERSIONS_CHANNEL

MAX_ENTRIES = 10_000  # past this many, start over (a bound, not an eviction policy)
RECENT_NOTICES = 1_024  # a read that more notices overlapped than this is not kept

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
# () -> (the value, the aggregates it was read from), or None: there is no such row
Load = Callable[[], Awaitable[tuple[V, Iterable[UUID]] | None]]


@dataclass
class NoticedCache(Generic[K, V]):
    entries: dict[K, V] = field(default_factory=dict)
    # an aggregate id -> the keys whose entry was read from it
    dependents: defaultdict[UUID, set[K]] = field(default_factory=lambda: defaultdict(set))
    # the aggregates of the latest notices, and how many notices were heard in all
    recent: deque[UUID] = field(default_factory=lambda: deque(maxlen=RECENT_NOTICES))
    heard: int = 0

    def get(self, key: K) -> V | None:
        return self.entries.get(key)

    def mark(self) -> int:
        """Taken before a read: `keep` refuses it if a notice about its sources came since."""
        return self.heard

    def keep(self, key: K, value: V, sources: Iterable[UUID], read_at: int) -> None:
        sources = set(sources)
        since = self.heard - read_at
        if since > len(self.recent):
            return  # more notices than remembered (or a clear) since the read began
        if since and not sources.isdisjoint(list(self.recent)[-since:]):
            return
        if len(self.entries) >= MAX_ENTRIES:
            self.clear()
        self.entries[key] = value
        for source in sources:
            self.dependents[source].add(key)

    def projected(self, payload: str) -> None:
        """A projection notice ("<projection>_v<n>:<aggregate id>:<version>")."""
        try:
            aggregate = UUID(payload.rsplit(":", 2)[1])
        except (IndexError, ValueError):
            return
        self.recent.append(aggregate)
        self.heard += 1
        for key in self.dependents.pop(aggregate, ()):
            self.entries.pop(key, None)

    def clear(self) -> None:
        self.entries.clear()
        self.dependents.clear()
        self.recent.clear()
        self.heard += RECENT_NOTICES + 1  # no read under way is kept

    async def read(self, key: K, load: Load[V]) -> V | None:
        """The kept entry, else `load()`'s (value, the aggregates it was read from), kept."""
        cached = self.entries.get(key)
        if cached is not None:
            return cached
        read_at = self.mark()
        loaded = await load()
        if loaded is None:
            return None
        value, sources = loaded
        self.keep(key, value, sources, read_at)
        return value


def following(notifications: Notifications) -> NoticedCache[Any, Any]:
    """A cache evicted by the projection notices `notifications` hears, cleared on a
    read-model version change and on the listener's reconnects."""
    cache: NoticedCache[Any, Any] = NoticedCache()
    notifications.follow(PROJECTION_CHANNEL, cache.projected, cache.clear)
    notifications.follow(VERSIONS_CHANNEL, lambda _: cache.clear(), cache.clear)
    return cache


async def read_through(cache: NoticedCache[K, V] | None, key: K, load: Load[V]) -> V | None:
    """`load()`'s value (None: there is none), through `cache` when there is one."""
    if cache is not None:
        return await cache.read(key, load)
    loaded = await load()
    return None if loaded is None else loaded[0]
