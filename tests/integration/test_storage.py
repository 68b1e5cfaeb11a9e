"""Storage contract for LocalStorage and S3Storage (S3 against moto's real HTTP server)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from adapters.embedded.ports import LOOPBACK, free_port, port_accepts, wait_until
from adapters.storage.base import FileNotFoundInStorage, Storage
from adapters.storage.local import LocalStorage
from adapters.storage.s3 import S3Storage

# moto accepts any credentials; they go through the constructor, never the environment.
FAKE_KEY, FAKE_SECRET = "testing-access-key", "testing-secret-key"


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


# -- local filesystem --------------------------------------------------------------------


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


# -- S3 via moto ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    try:
        wait_until(lambda: port_accepts(port), timeout=10.0, what=f"moto server on port {port}")
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.stop()


def raw_client(endpoint: str, region: str = "us-east-1") -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_SECRET,
        region_name=region,
    )


class TestS3Storage(StorageContract):
    @pytest.fixture
    async def storage(self, moto_endpoint: str) -> AsyncIterator[S3Storage]:
        storage = S3Storage(
            bucket=f"eddy-{uuid.uuid4().hex[:12]}",
            endpoint_url=moto_endpoint,
            access_key=FAKE_KEY,
            secret_key=FAKE_SECRET,
            region="us-east-1",
            address_style="path",
            create_bucket=True,
        )
        try:
            yield storage
        finally:
            await storage.close()

    async def test_delete_prefix_paginates_and_batches(
        self, storage: S3Storage, moto_endpoint: str
    ) -> None:
        # More than one list page / DeleteObjects batch (1000 keys each).
        keys = [f"bulk/{i:05d}" for i in range(1105)]
        sem = asyncio.Semaphore(16)

        async def put(key: str) -> None:
            async with sem:
                await storage.save(key, b"")

        await asyncio.gather(*(put(k) for k in keys))
        await storage.save("bulkhead/keep", b"k")
        await storage.delete_prefix("bulk/")
        listing = raw_client(moto_endpoint).list_objects_v2(Bucket=storage.bucket)
        assert [item["Key"] for item in listing.get("Contents", [])] == ["bulkhead/keep"]
        assert await storage.exists("bulkhead/keep")

    async def test_missing_bucket_without_create_flag(self, moto_endpoint: str) -> None:
        storage = S3Storage(
            f"absent-{uuid.uuid4().hex[:12]}", moto_endpoint, FAKE_KEY, FAKE_SECRET, "us-east-1"
        )
        try:
            with pytest.raises(ClientError):
                await storage.save("k", b"v")
        finally:
            await storage.close()

    async def test_create_bucket_is_idempotent_and_regional(self, moto_endpoint: str) -> None:
        bucket = f"eu-{uuid.uuid4().hex[:12]}"
        for _ in range(2):  # the second instance finds the bucket already there
            storage = S3Storage(
                bucket, moto_endpoint, FAKE_KEY, FAKE_SECRET, "eu-west-1", create_bucket=True
            )
            try:
                await storage.save("k", b"v")
                assert await storage.load("k") == b"v"
            finally:
                await storage.close()
        client = raw_client(moto_endpoint, "eu-west-1")
        location = client.get_bucket_location(Bucket=bucket)
        assert location["LocationConstraint"] == "eu-west-1"

    def test_rejects_bad_settings(self) -> None:
        with pytest.raises(ValueError):
            S3Storage("", None, None, None, None)
        with pytest.raises(ValueError):
            S3Storage("b", None, None, None, None, address_style="sideways")
