"""File storage (uploaded documents, extracted text): one interface, one backend per file."""

from __future__ import annotations

from typing import Protocol


class FileNotFoundInStorage(Exception):
    pass


class Storage(Protocol):
    async def save(self, key: str, data: bytes) -> None:
        """Write (or overwrite) the object at `key`."""
        ...

    async def load(self, key: str) -> bytes:
        """Raises FileNotFoundInStorage when missing."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is fine."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with `prefix`."""
        ...
