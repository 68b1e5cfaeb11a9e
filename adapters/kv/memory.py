"""The key-value and stream port in process memory: for one process without Redis (the unit
tier). The same contract as the Redis adapter, which is the reference: expiry, atomic
counters, stream ids "<milliseconds>-<sequence>" increasing along a stream, blocking reads
woken by appends. One event loop uses it (no locks: each operation completes without
awaiting in between)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

StreamId = tuple[int, int]
_FENCE = ".fence"  # beside a stream: the fence of its writer (see claim)


def _parse_id(value: str) -> StreamId:
    millis, _, sequence = value.partition("-")
    return int(millis), int(sequence or 0)


def _format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


@dataclass
class _Stream:
    entries: list[tuple[StreamId, bytes]] = field(default_factory=list)


class MemoryKeyValueStore:
    def __init__(self) -> None:
        self._values: dict[str, Any] = {}  # str, dict[str, str], or _Stream
        self._expires: dict[str, float] = {}  # key -> time.monotonic() deadline
        self._appended: dict[str, set[asyncio.Event]] = {}  # stream -> blocked readers

    def _live(self, key: str) -> Any:
        deadline = self._expires.get(key)
        if deadline is not None and time.monotonic() >= deadline:
            self._values.pop(key, None)
            self._expires.pop(key, None)
        return self._values.get(key)

    def _put(self, key: str, value: Any, ttl: int | None) -> None:
        self._values[key] = value
        if ttl is None:
            self._expires.pop(key, None)
        else:
            self._expires[key] = time.monotonic() + ttl

    async def get(self, key: str) -> str | None:
        value = self._live(key)
        return value if isinstance(value, str) else None

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return [await self.get(k) for k in keys]

    async def set(self, key: str, value: str, *, ttl: int | None = None,
                  only_if_new: bool = False) -> bool:
        if only_if_new and self._live(key) is not None:
            return False
        self._put(key, value, ttl)
        return True

    async def take(self, key: str) -> str | None:
        value = await self.get(key)
        await self.delete(key)
        return value

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._expires.pop(key, None)

    async def expire(self, key: str, ttl: int) -> bool:
        if self._live(key) is None:
            return False
        self._expires[key] = time.monotonic() + ttl
        return True

    async def expire_if(self, key: str, value: str, ttl: int) -> bool:
        if self._live(key) != value:
            return False
        self._expires[key] = time.monotonic() + ttl
        return True

    async def delete_if(self, key: str, value: str) -> bool:
        if self._live(key) != value:
            return False
        self._values.pop(key)
        self._expires.pop(key, None)
        return True

    async def count(self, keys: Sequence[str], window: int) -> list[int]:
        counts = []
        for key in keys:
            current = self._live(key)
            counts.append(int(current or 0) + 1)
            if current is None:
                self._put(key, "1", window)
            else:
                self._values[key] = str(counts[-1])
        return counts

    async def uncount(self, key: str) -> None:
        current = self._live(key)
        if current is not None and int(current) > 0:
            self._values[key] = str(int(current) - 1)

    async def set_field(self, key: str, field: str, value: str) -> None:
        fields = self._live(key)
        if fields is None:
            fields = {}
            self._put(key, fields, None)
        fields[field] = value

    async def get_fields(self, key: str, fields: Sequence[str]) -> list[str | None]:
        found = self._live(key) or {}
        return [found.get(f) for f in fields]

    async def append(self, stream: str, entries: Sequence[bytes], ttl: int,
                     fence: int | None = None) -> bool:
        if fence is not None:
            if self._live(stream + _FENCE) != str(fence):
                return False
            self._expires[stream + _FENCE] = time.monotonic() + ttl
        found = self._live(stream)
        if found is None:
            found = _Stream()
        last = found.entries[-1][0] if found.entries else (0, 0)
        for entry in entries:
            millis = int(time.time() * 1000)
            last = (millis, 0) if millis > last[0] else (last[0], last[1] + 1)
            found.entries.append((last, entry))
        self._put(stream, found, ttl)
        for woken in self._appended.get(stream, ()):
            woken.set()
        return True

    async def claim(self, stream: str, fence: int, ttl: int) -> int | None:
        held = self._live(stream + _FENCE)
        if held is not None and int(held) > fence:
            return None
        self._put(stream + _FENCE, str(fence), ttl)
        return await self.length(stream)

    async def length(self, stream: str) -> int:
        found = self._live(stream)
        return len(found.entries) if found is not None else 0

    async def newest(self, stream: str, count: int) -> list[tuple[str, bytes]]:
        found = self._live(stream)
        entries = found.entries[-count:] if found is not None else []
        return [(_format_id(i), entry) for i, entry in reversed(entries)]

    async def has(self, stream: str, entry_id: str) -> bool:
        found = self._live(stream)
        wanted = _parse_id(entry_id)
        return found is not None and any(i == wanted for i, _ in found.entries)

    def _after(self, stream: str, after: StreamId, count: int) -> list[tuple[str, bytes]]:
        found = self._live(stream)
        entries = found.entries if found is not None else []
        return [(_format_id(i), entry) for i, entry in entries if i > after][:count]

    async def read(self, stream: str, after: str, count: int,
                   block_ms: int) -> list[tuple[str, bytes]]:
        start = _parse_id(after)
        read = self._after(stream, start, count)
        if read or block_ms <= 0:
            return read
        woken = asyncio.Event()
        self._appended.setdefault(stream, set()).add(woken)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), block_ms / 1000)
        finally:
            self._appended[stream].discard(woken)
            if not self._appended[stream]:
                del self._appended[stream]
        return self._after(stream, start, count)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
