"""File storage (uploaded documents, extracted text): one interface, one backend per file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

# Bytes read (and sent on) at a time when an object is streamed.
STREAM_CHUNK_SIZE = 256 * 1024


class FileNotFoundInStorage(Exception):
    pass


class Storage(Protocol):
    async def save(self, key: str, data: bytes) -> None:
        """Write (or overwrite) the object at `key`."""
        ...

    async def load(self, key: str) -> bytes:
        """Raises FileNotFoundInStorage when missing."""
        ...

    def stream(self, key: str, chunk_size: int = STREAM_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The object's bytes, `chunk_size` at a time, read as they are consumed (never the
        whole object in memory). Raises FileNotFoundInStorage, before the first chunk, when
        missing."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is fine."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with `prefix`."""
        ...

    async def scan(self, prefix: str) -> list[str]:
        """The keys of every object whose key starts with `prefix` (non-empty), sorted."""
        ...
