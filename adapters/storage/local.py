"""Local-filesystem storage: Dify's `STORAGE_TYPE=opendal` with `OPENDAL_SCHEME=fs`.

Keys are relative POSIX paths under `root`. Blocking file I/O runs in worker threads
(asyncio.to_thread) so a big upload never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from adapters.storage.base import STREAM_CHUNK_SIZE, FileNotFoundInStorage

# Temp files live next to their target (os.replace is only atomic within one filesystem);
# the prefix marks leftovers of a crash so an operator can spot and sweep them.
_TMP_PREFIX = ".eddy-tmp-"


class LocalStorage:
    """Objects are plain files under `root`; writes are atomic (temp file + os.replace)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self._root = Path(root).resolve()
        # fsync before the rename so a power cut cannot leave a renamed-but-empty file;
        # tests may turn it off for speed.
        self._fsync = fsync

    @property
    def root(self) -> Path:
        return self._root

    # -- Storage ------------------------------------------------------------------------

    async def save(self, key: str, data: bytes) -> None:
        # Key checks resolve symlinks (file system access), so they run in the thread too.
        await asyncio.to_thread(self._save, key, bytes(data))

    async def load(self, key: str) -> bytes:
        return await asyncio.to_thread(self._load, key)

    async def stream(self, key: str, chunk_size: int = STREAM_CHUNK_SIZE,
                     ) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._open, key)
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(lambda: self._path(key).is_file())

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def delete_prefix(self, prefix: str) -> None:
        await asyncio.to_thread(self._delete_prefix, prefix)

    async def scan(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._scan, prefix)

    # -- key handling -------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The file for `key`; ValueError for keys that could reach outside `root`."""
        if not key or key.endswith("/") or not PurePosixPath(key).parts:
            raise ValueError(f"invalid storage key {key!r}: empty or a directory")
        return self._resolve(key)

    def _resolve(self, relative: str) -> Path:
        if "\x00" in relative:
            raise ValueError(f"invalid storage key {relative!r}: NUL byte")
        pure = PurePosixPath(relative)
        if pure.is_absolute() or os.path.isabs(relative):
            raise ValueError(f"invalid storage key {relative!r}: absolute path")
        if ".." in pure.parts:
            raise ValueError(f"invalid storage key {relative!r}: '..' escapes the root")
        path = self._root.joinpath(*pure.parts)
        # A symlink inside root could still point outside it; refuse to follow it there.
        if not path.resolve().is_relative_to(self._root):
            raise ValueError(f"invalid storage key {relative!r}: resolves outside the root")
        return path

    # -- blocking helpers (run in threads) -----------------------------------------------

    def _save(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                if self._fsync:
                    tmp.flush()
                    os.fsync(tmp.fileno())
            # The file keeps mkstemp's 0600 mode: objects are only read back by Eddy itself.
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise

    def _load(self, key: str) -> bytes:
        with self._open(key) as handle:
            return handle.read()

    def _open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise FileNotFoundInStorage(key) from exc

    def _delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir() and not path.is_symlink():
            return  # a "directory" is not an object; delete_prefix removes those
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()

    def _scan(self, prefix: str) -> list[str]:
        if not prefix:
            raise ValueError("scan needs a non-empty prefix")
        directory = prefix.rpartition("/")[0]
        base = self._resolve(directory) if directory else self._root
        keys = []
        for folder, _, files in os.walk(base):
            for name in files:
                key = Path(folder, name).relative_to(self._root).as_posix()
                if key.startswith(prefix) and not name.startswith(_TMP_PREFIX):
                    keys.append(key)
        return sorted(keys)

    def _delete_prefix(self, prefix: str) -> None:
        if not prefix:
            # Object-store semantics would wipe the whole root; far too easy to do by accident.
            raise ValueError("delete_prefix needs a non-empty prefix")
        # "a/b/fi" matches a/b/file.txt and everything under a/b/fine/: split into the
        # directory to scan and the start of the entry names inside it.
        directory, _, name_start = prefix.rpartition("/")
        base = self._resolve(directory) if directory else self._root
        if name_start in (".", ".."):
            raise ValueError(f"invalid storage prefix {prefix!r}")
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if not entry.name.startswith(name_start):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
