"""The storage contract (tests/contracts/storage.py) on S3Storage, against moto's real S3
HTTP server (the session's `s3_endpoint`), and what S3 adds to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from adapters.storage.s3 import S3Storage
from tests.contracts.storage import StorageContract

# moto accepts any credentials; they go through the constructor, never the environment.
FAKE_KEY, FAKE_SECRET = "testing-access-key", "testing-secret-key"


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
    async def storage(self, s3_endpoint: str) -> AsyncIterator[S3Storage]:
        storage = S3Storage(
            bucket=f"eddy-{uuid.uuid4().hex[:12]}",
            endpoint_url=s3_endpoint,
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
        self, storage: S3Storage, s3_endpoint: str
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
        listing = raw_client(s3_endpoint).list_objects_v2(Bucket=storage.bucket)
        assert [item["Key"] for item in listing.get("Contents", [])] == ["bulkhead/keep"]
        assert await storage.exists("bulkhead/keep")

    async def test_missing_bucket_without_create_flag(self, s3_endpoint: str) -> None:
        storage = S3Storage(
            f"absent-{uuid.uuid4().hex[:12]}", s3_endpoint, FAKE_KEY, FAKE_SECRET, "us-east-1"
        )
        try:
            with pytest.raises(ClientError):
                await storage.save("k", b"v")
        finally:
            await storage.close()

    async def test_create_bucket_is_idempotent_and_regional(self, s3_endpoint: str) -> None:
        bucket = f"eu-{uuid.uuid4().hex[:12]}"
        for _ in range(2):  # the second instance finds the bucket already there
            storage = S3Storage(
                bucket, s3_endpoint, FAKE_KEY, FAKE_SECRET, "eu-west-1", create_bucket=True
            )
            try:
                await storage.save("k", b"v")
                assert await storage.load("k") == b"v"
            finally:
                await storage.close()
        client = raw_client(s3_endpoint, "eu-west-1")
        location = client.get_bucket_location(Bucket=bucket)
        assert location["LocationConstraint"] == "eu-west-1"

    def test_rejects_bad_settings(self) -> None:
        with pytest.raises(ValueError):
            S3Storage("", None, None, None, None)
        with pytest.raises(ValueError):
            S3Storage("b", None, None, None, None, address_style="sideways")
