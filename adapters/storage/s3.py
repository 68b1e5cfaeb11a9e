"""S3-compatible object storage (AWS S3, MinIO, R2, ...): Dify's `STORAGE_TYPE=s3`.

boto3 is synchronous; each call runs in a worker thread. One client is shared by all
threads (boto3 clients are thread-safe, sessions and resources are not).

Each request has connect and read timeouts and a few attempts. A server that accepts and
never answers (or stops answering mid-body) then fails the call with `StorageTimeout`, not
transient: the work that needed the object fails visibly instead of waiting without limit.
An S3 that refuses connections is an outage like any other, waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

from adapters.outside import OutsideServiceTimeout
from adapters.storage.base import STREAM_CHUNK_SIZE, FileNotFoundInStorage

# S3 refuses more than 1000 keys per DeleteObjects request.
_DELETE_BATCH = 1000
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket", "404", "NotFound"})


class StorageTimeout(OutsideServiceTimeout):
    """S3 gave no answer within the timeouts of each attempt."""


@contextlib.contextmanager
def _timeouts_end(operation: str) -> Iterator[None]:
    try:
        yield
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        raise StorageTimeout(f"S3 {operation}: no answer within the timeouts") from exc


class S3Storage:
    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str | None,
        address_style: str = "auto",
        *,
        create_bucket: bool = False,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if not bucket:
            raise ValueError("S3Storage needs a bucket name")
        if address_style not in ("auto", "virtual", "path"):
            raise ValueError(f"address_style must be auto, virtual or path, not {address_style!r}")
        self._bucket = bucket
        self._endpoint_url = endpoint_url or None
        self._access_key = access_key or None
        self._secret_key = secret_key or None
        self._region = region or None
        self._address_style = address_style
        # Dify expects the bucket to exist; creating it is a convenience for dev/embedded.
        self._create_bucket = create_bucket
        self._limits = {"connect_timeout": connect_timeout, "read_timeout": read_timeout,
                        "retries": {"max_attempts": max_attempts, "mode": "standard"}}
        self._client: BaseClient | None = None
        self._bucket_ready = not create_bucket
        self._lock = threading.Lock()

    @property
    def bucket(self) -> str:
        return self._bucket

    # -- Storage ------------------------------------------------------------------------

    async def save(self, key: str, data: bytes) -> None:
        _check_key(key)
        # A PUT is atomic in S3: readers see the old object or the whole new one.
        await self._call("put_object", Bucket=self._bucket, Key=key, Body=bytes(data))

    async def load(self, key: str) -> bytes:
        _check_key(key)
        return await asyncio.to_thread(self._load, key)

    async def stream(self, key: str, chunk_size: int = STREAM_CHUNK_SIZE,
                     ) -> AsyncIterator[bytes]:
        _check_key(key)
        body = await asyncio.to_thread(self._body, key)
        try:
            while chunk := await asyncio.to_thread(self._read, body, chunk_size):
                yield bytes(chunk)
        finally:
            await asyncio.to_thread(body.close)

    async def exists(self, key: str) -> bool:
        _check_key(key)
        try:
            await self._call("head_object", Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_KEY_CODES:
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        _check_key(key)
        # DeleteObject on a missing key succeeds, which gives us idempotency for free.
        await self._call("delete_object", Bucket=self._bucket, Key=key)

    async def delete_prefix(self, prefix: str) -> None:
        if not prefix:
            # Same guard as LocalStorage: an empty prefix would empty the whole bucket.
            raise ValueError("delete_prefix needs a non-empty prefix")
        await asyncio.to_thread(self._delete_prefix, prefix)

    async def scan(self, prefix: str) -> list[str]:
        if not prefix:
            raise ValueError("scan needs a non-empty prefix")
        return await asyncio.to_thread(self._scan, prefix)

    async def close(self) -> None:
        # In a thread: the lock may be held by a bucket check in progress.
        await asyncio.to_thread(self._close)

    # -- blocking helpers (run in threads) -----------------------------------------------

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._invoke, operation, kwargs)

    def _invoke(self, operation: str, kwargs: dict[str, Any]) -> Any:
        with _timeouts_end(operation):
            return getattr(self._ensure_client(), operation)(**kwargs)

    def _load(self, key: str) -> bytes:
        body = self._body(key)
        try:
            return bytes(self._read(body))
        finally:
            body.close()

    @staticmethod
    def _read(body: Any, size: int | None = None) -> bytes:
        with _timeouts_end("get_object"):
            return bytes(body.read(size))

    def _body(self, key: str) -> Any:
        """The object's body, a stream read as it is consumed (boto3's StreamingBody)."""
        try:
            with _timeouts_end("get_object"):
                response = self._ensure_client().get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_KEY_CODES:
                raise FileNotFoundInStorage(key) from exc
            raise
        return response["Body"]

    def _delete_prefix(self, prefix: str) -> None:
        with _timeouts_end("delete_prefix"):
            self._delete_all(prefix)

    def _scan(self, prefix: str) -> list[str]:
        with _timeouts_end("scan"):
            paginator = self._ensure_client().get_paginator("list_objects_v2")
            return sorted(item["Key"] for page in paginator.paginate(
                Bucket=self._bucket, Prefix=prefix) for item in page.get("Contents", []))

    def _delete_all(self, prefix: str) -> None:
        client = self._ensure_client()
        paginator = client.get_paginator("list_objects_v2")
        # Deleting while paginating is fine: the continuation token is a key position,
        # and each page holds at most 1000 keys, exactly one DeleteObjects batch.
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            for start in range(0, len(keys), _DELETE_BATCH):
                batch = keys[start : start + _DELETE_BATCH]
                result = client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = [e for e in result.get("Errors", []) if e.get("Code") != "NoSuchKey"]
                if errors:
                    first = errors[0]
                    raise RuntimeError(
                        f"S3 refused to delete {len(errors)} object(s) under {prefix!r}, "
                        f"e.g. {first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                    )

    def _close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _ensure_client(self) -> BaseClient:
        client = self._client
        if client is not None and self._bucket_ready:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            if not self._bucket_ready:
                self._ensure_bucket(self._client)
                self._bucket_ready = True
            return self._client

    def _new_client(self) -> BaseClient:
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": self._address_style},
            **self._limits,
        )
        # A dedicated session: boto3's default session is shared global state.
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self._endpoint_url,
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            region_name=self._region,
            config=config,
        )

    def _ensure_bucket(self, client: BaseClient) -> None:
        try:
            client.head_bucket(Bucket=self._bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _MISSING_BUCKET_CODES:
                raise
        kwargs: dict[str, Any] = {"Bucket": self._bucket}
        # us-east-1 is the one region that rejects an explicit LocationConstraint.
        if self._region and self._region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            client.create_bucket(**kwargs)
        except ClientError as exc:
            # Created concurrently by another of our processes: fine. "BucketAlreadyExists"
            # (someone else's bucket) is a real configuration error and propagates.
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise


def _check_key(key: str) -> None:
    if not key:
        raise ValueError("storage key must not be empty")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
