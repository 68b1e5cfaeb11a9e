"""The storage contract: what every Storage must do, as a mixin a backend's test class
combines with its `storage` fixture (an empty store). Subclasses: LocalStorage in
tests/unit/test_local_storage.py, S3Storage (on moto's S3 server) in
tests/integration/test_storage.py.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from adapters.storage.base import FileNotFoundInStorage, Storage


class StorageContract:
    """Behaviour every Storage must show. Subclasses provide the `storage` fixture."""

    async def test_save_load_roundtrip(self, storage: Storage) -> None:
        data = bytes(range(256)) * 64  # binary, not text
        await storage.save("upload_files/t1/abc.pdf", data)
        assert await storage.load("upload_files/t1/abc.pdf") == data
        assert await storage.exists("upload_files/t1/abc.pdf")

    async def test_overwrite(self, storage: Storage) -> None:
        await storage.save("k.txt", b"first, and longer")
        await storage.save("k.txt", b"second")
        assert await storage.load("k.txt") == b"second"

    async def test_empty_object(self, storage: Storage) -> None:
        await storage.save("empty", b"")
        assert await storage.load("empty") == b""
        assert await storage.exists("empty")

    async def test_missing_key(self, storage: Storage) -> None:
        with pytest.raises(FileNotFoundInStorage):
            await storage.load("nope/missing.bin")
        assert not await storage.exists("nope/missing.bin")

    async def test_delete_is_idempotent(self, storage: Storage) -> None:
        await storage.save("d/x", b"1")
        await storage.delete("d/x")
        assert not await storage.exists("d/x")
        await storage.delete("d/x")
        await storage.delete("never/existed")
        with pytest.raises(FileNotFoundInStorage):
            await storage.load("d/x")

    async def test_delete_prefix(self, storage: Storage) -> None:
        keys = ["docs/a/1.txt", "docs/a/sub/2.txt", "docs/ab.txt", "docs/b/3.txt", "other.txt"]
        for key in keys:
            await storage.save(key, key.encode())

        await storage.delete_prefix("docs/a/")
        assert [await storage.exists(k) for k in keys] == [False, False, True, True, True]

        # A prefix is a string prefix, not a directory: "docs/a" also matches "docs/ab.txt".
        await storage.save("docs/a/1.txt", b"again")
        await storage.delete_prefix("docs/a")
        assert [await storage.exists(k) for k in keys] == [False, False, False, True, True]

        await storage.delete_prefix("no/such/prefix/")
        assert await storage.load("docs/b/3.txt") == b"docs/b/3.txt"

    async def test_scan_lists_the_keys_under_a_prefix(self, storage: Storage) -> None:
        keys = ["docs/a/1.txt", "docs/a/sub/2.txt", "docs/ab.txt", "docs/b/3.txt", "other.txt"]
        for key in keys:
            await storage.save(key, key.encode())
        assert await storage.scan("docs/a/") == ["docs/a/1.txt", "docs/a/sub/2.txt"]
        assert await storage.scan("docs/a") == ["docs/a/1.txt", "docs/a/sub/2.txt",
                                                "docs/ab.txt"]
        assert await storage.scan("docs/") == keys[:4]
        assert await storage.scan("no/such/") == []
        with pytest.raises(ValueError):
            await storage.scan("")

    async def test_delete_prefix_refuses_empty_prefix(self, storage: Storage) -> None:
        await storage.save("keep.txt", b"1")
        with pytest.raises(ValueError):
            await storage.delete_prefix("")
        assert await storage.exists("keep.txt")

    async def test_concurrent_writes_to_one_key(self, storage: Storage) -> None:
        payloads = [bytes([i]) * 50_000 for i in range(8)]
        await asyncio.gather(*(storage.save("race.bin", p) for p in payloads))
        assert await storage.load("race.bin") in payloads  # one whole version, never a mix

    async def test_stream_reads_in_chunks(self, storage: Storage) -> None:
        data = os.urandom(100_000)
        await storage.save("big/blob.bin", data)
        chunks = [c async for c in storage.stream("big/blob.bin", chunk_size=30_000)]
        assert [len(c) for c in chunks] == [30_000, 30_000, 30_000, 10_000]
        assert b"".join(chunks) == data
        await storage.save("empty", b"")
        assert [c async for c in storage.stream("empty")] == []

    async def test_stream_of_a_missing_key(self, storage: Storage) -> None:
        with pytest.raises(FileNotFoundInStorage):
            await anext(aiter(storage.stream("nope/missing.bin")))

    async def test_unicode_keys(self, storage: Storage) -> None:
        await storage.save("tenant/报告 final (1).pdf", b"x")
        assert await storage.load("tenant/报告 final (1).pdf") == b"x"
