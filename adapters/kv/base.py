"""The key-value and stream port: short-lived operational state that is not domain state
(refresh tokens, login attempt counters, API key last use, the scheduler's lease, task
streams and their stop requests). Redis serves it in production (`redis.py`); process
memory serves a single process, such as the unit tier (`memory.py`).

Keys are given without the deployment's prefix: an adapter adds its own, so deployments can
share one server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class KeyValueStore(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The values of `keys`, in their order, in one round trip."""
        ...

    async def set(self, key: str, value: str, *, ttl: int | None = None,
                  only_if_new: bool = False) -> bool:
        """False when `only_if_new` and the key exists (nothing is written then)."""
        ...

    async def take(self, key: str) -> str | None:
        """Read and delete at once: of concurrent takers, one gets the value."""
        ...

    async def delete(self, key: str) -> None: ...

    async def expire(self, key: str, ttl: int) -> bool:
        """False when the key does not exist."""
        ...

    async def expire_if(self, key: str, value: str, ttl: int) -> bool:
        """Compare and expire, atomically: set the key's expiry only while it holds `value`
        (a holder renews its own lease, never one taken by another after it lapsed); False,
        nothing changed, otherwise."""
        ...

    async def delete_if(self, key: str, value: str) -> bool:
        """Compare and delete, atomically: delete the key only while it holds `value`
        (a holder releases its own lease, never another's); False, nothing changed,
        otherwise."""
        ...

    async def count(self, keys: Sequence[str], window: int) -> list[int]:
        """Add one to each counter, atomically, and return the new counts; a counter that
        starts here expires `window` seconds later (one already running keeps its expiry)."""
        ...

    async def uncount(self, key: str) -> None:
        """Take one back from a running counter (never below 0, never creating one)."""
        ...

    async def set_field(self, key: str, field: str, value: str) -> None: ...

    async def get_fields(self, key: str, fields: Sequence[str]) -> list[str | None]: ...

    async def append(self, stream: str, entries: Sequence[bytes], ttl: int,
                     fence: int | None = None) -> bool:
        """Entries onto a stream, in order, in one round trip, all or none; the stream
        expires `ttl` seconds after this write. With `fence`: only while the stream's
        writer is that fence (see `claim`); False, nothing written, otherwise."""
        ...

    async def claim(self, stream: str, fence: int, ttl: int) -> int | None:
        """Make the holder of `fence` the stream's writer unless a higher fence is: the
        number of entries written so far, or None (refused). A stale writer, fenced off by
        a later one, can neither write nor claim the stream back. The claim expires with
        the stream (`ttl` seconds after its last write)."""
        ...

    async def length(self, stream: str) -> int: ...

    async def newest(self, stream: str, count: int) -> list[tuple[str, bytes]]:
        """The newest `count` entries as (id, entry), newest first (none for an empty or
        expired stream)."""
        ...

    async def has(self, stream: str, entry_id: str) -> bool:
        """Whether the stream holds an entry with this id."""
        ...

    async def read(self, stream: str, after: str, count: int,
                   block_ms: int) -> list[tuple[str, bytes]]:
        """Up to `count` entries with ids after `after` ("0": from the start) as (id, entry),
        waiting up to `block_ms` (0: not at all) for one when there is none yet (then an
        empty list). Ids are "<milliseconds>-<sequence>", increasing along the stream."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
