"""This gateway process's read caches (`projections/read_cache.py`), one per name, kept in
the app's state."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from fastapi import Request

from gateway.deps import get_container
from projections.read_cache import Load, NoticedCache, V, following, read_through


async def cached(request: Request, name: str, key: Hashable, load: Load[V]) -> V | None:
    """`load()`'s value (None: there is none), through this process's cache called `name`
    (read directly without a notification listener: nothing would evict)."""
    return await read_through(noticed_cache(request, name), key, load)


def noticed_cache(request: Request, name: str) -> NoticedCache[Any, Any] | None:
    """This process's cache called `name`; None without a notification listener (nothing
    would evict)."""
    state: Any = request.app.state
    caches: dict[str, NoticedCache[Any, Any]] | None = getattr(state, "noticed_caches", None)
    if caches is None:
        caches = state.noticed_caches = {}
    cache = caches.get(name)
    if cache is None:
        notifications = get_container(request).notifications
        if notifications is None:
            return None
        cache = caches[name] = following(notifications)
    return cache
