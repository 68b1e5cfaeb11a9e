"""The storage contract (tests/contracts/storage.py) on a local folder, and what keeping
objects as files adds to it: keys are paths that stay under the root, writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.storage.base import FileNotFoundInStorage
from adapters.storage.local import LocalStorage
from tests.contracts.storage import StorageContract


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return tmp_path / "storage"

    @pytest.fixture
    def storage(self, root: Path) -> LocalStorage:
        return LocalStorage(root, fsync=False)

    async def test_keys_are_paths_under_root(self, storage: LocalStorage, root: Path) -> None:
        await storage.save("a/b/c.txt", b"hi")
        assert (root / "a" / "b" / "c.txt").read_bytes() == b"hi"

    @pytest.mark.parametrize(
        "key", ["../escape", "a/../../escape", "/etc/passwd", "a/../..", "", ".", "dir/", "a\x00b"]
    )
    async def test_rejects_keys_that_escape_root(
        self, storage: LocalStorage, root: Path, key: str
    ) -> None:
        with pytest.raises(ValueError):
            await storage.save(key, b"x")
        with pytest.raises(ValueError):
            await storage.load(key)
        with pytest.raises(ValueError):
            await storage.delete(key)
        assert not (root.parent / "escape").exists()

    async def test_rejects_prefixes_that_escape_root(
        self, storage: LocalStorage, root: Path
    ) -> None:
        victim = root.parent / "victim"
        victim.mkdir()
        (victim / "f").write_bytes(b"keep")
        for prefix in ["../victim/", "../vic", "/tmp/", "a/../../victim/"]:
            with pytest.raises(ValueError):
                await storage.delete_prefix(prefix)
        assert (victim / "f").read_bytes() == b"keep"

    @pytest.fixture
    def outside(self, root: Path, tmp_path: Path) -> Path:
        """A directory outside root, reachable through the symlink root/link."""
        outside = tmp_path / "outside"
        outside.mkdir()
        root.mkdir(parents=True, exist_ok=True)
        (root / "link").symlink_to(outside, target_is_directory=True)
        return outside

    async def test_symlink_out_of_root_is_refused(
        self, storage: LocalStorage, outside: Path
    ) -> None:
        with pytest.raises(ValueError):
            await storage.save("link/x", b"x")
        assert not (outside / "x").exists()

    async def test_failed_write_keeps_old_file_and_leaves_no_temp(
        self, storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await storage.save("f/doc.txt", b"old complete content")

        def crash(src: str, dst: str) -> None:
            raise OSError("simulated crash before the rename")

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="simulated"):
            await storage.save("f/doc.txt", b"new content that never lands")
        monkeypatch.undo()

        assert await storage.load("f/doc.txt") == b"old complete content"
        assert sorted(p.name for p in (root / "f").iterdir()) == ["doc.txt"]

    async def test_directory_is_not_an_object(self, storage: LocalStorage) -> None:
        await storage.save("dir/file", b"1")
        assert not await storage.exists("dir")
        with pytest.raises(FileNotFoundInStorage):
            await storage.load("dir")
        await storage.delete("dir")  # not an object: nothing happens
        assert await storage.exists("dir/file")
