"""Downloads of documents' original files, streamed from storage (local or S3).

`GET /v1/datasets/{id}/documents/{doc}/download` answers a signed link, as Dify does: the
file's `/files/{file_id}/file-preview` URL with a timestamp, a nonce and an HMAC of them
under SECRET_KEY, good for FILES_ACCESS_TIMEOUT seconds and usable without a key (a browser
can follow it). `POST …/documents/download-zip` streams a ZIP of several documents' files,
each read from storage chunk by chunk as the archive is sent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import posixpath
import secrets
import time
import zipfile
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from adapters.storage.base import FileNotFoundInStorage, Storage
from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import get_container, maybe_uuid
from gateway.knowledge.lookups import dataset_of, document_of
from gateway.views import content_disposition
from projections.knowledge import queries as kq
from schemas.errors import DocumentNotFound, NotFound
from schemas.knowledge import api

router = APIRouter(prefix="/v1/datasets")
preview_router = APIRouter(prefix="/files")

# Shown inline only when a browser cannot run it from our origin; anything else downloads.
_ACTIVE_CONTENT = ("text/html", "application/xhtml+xml", "image/svg+xml", "text/xml",
                   "application/xml", "application/javascript", "text/javascript")


class UploadedFileMissing(NotFound):
    default_message = "Uploaded file not found."


class InvalidFileSignature(NotFound):
    default_message = "File not found or signature is invalid"


# --- signed links (Dify's file_helpers) ---------------------------------------------------------


def _signature(secret: str, file_id: str, timestamp: str, nonce: str) -> str:
    message = f"file-preview|{file_id}|{timestamp}|{nonce}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()


def signed_file_url(base_url: str, secret: str, file_id: str, *, as_attachment: bool) -> str:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    query = {"timestamp": timestamp, "nonce": nonce,
             "sign": _signature(secret, file_id, timestamp, nonce)}
    if as_attachment:
        query["as_attachment"] = "true"
    return f"{base_url.rstrip('/')}/files/{file_id}/file-preview?{urlencode(query)}"


def signature_valid(secret: str, file_id: str, timestamp: str, nonce: str, sign: str,
                    timeout_seconds: int) -> bool:
    if not timestamp.isdigit() or time.time() - int(timestamp) > timeout_seconds:
        return False
    return hmac.compare_digest(_signature(secret, file_id, timestamp, nonce), sign)


# --- single document: a signed link ----------------------------------------------------------


@router.get("/{dataset_id}/documents/{document_id}/download")
async def download_document(request: Request, dataset_id: str, document_id: str,
                            key: ApiKeyPrincipal = DatasetKey) -> dict[str, str]:
    c = get_container(request)
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    if not await c.storage.exists(document["source"]["key"]):
        raise UploadedFileMissing()
    base_url = c.settings.FILES_URL or str(request.base_url)
    return {"url": signed_file_url(base_url, c.settings.SECRET_KEY, document["source"]["id"],
                                   as_attachment=True)}


@preview_router.get("/{file_id}/file-preview")
async def file_preview(request: Request, file_id: str,
                       timestamp: Annotated[str, Query()] = "",
                       nonce: Annotated[str, Query()] = "",
                       sign: Annotated[str, Query()] = "",
                       as_attachment: Annotated[bool, Query()] = False) -> StreamingResponse:
    """The file behind a signed link, streamed from storage (no API key: the signature is
    the permission)."""
    c = get_container(request)
    if maybe_uuid(file_id) is None or not signature_valid(
            c.settings.SECRET_KEY, file_id, timestamp, nonce, sign,
            c.settings.FILES_ACCESS_TIMEOUT):
        raise InvalidFileSignature()
    document = await kq.document_by_file(c.engine, UUID(file_id))
    if document is None:
        raise InvalidFileSignature()
    source = document["source"]
    chunks = await _opened(c.storage.stream(source["key"]))
    mime_type = source.get("mime_type") or "application/octet-stream"
    attachment = as_attachment or mime_type.split(";")[0].strip() in _ACTIVE_CONTENT
    return StreamingResponse(
        chunks, media_type="application/octet-stream" if attachment else mime_type,
        headers={"Content-Length": str(source["size"]), "X-Content-Type-Options": "nosniff",
                 "Content-Disposition": content_disposition(
                     "attachment" if attachment else "inline", source["name"])})


async def _opened(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream, with its first chunk read already: a missing file is a 404 before the
    answer starts, not a broken download."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    except FileNotFoundInStorage:
        raise UploadedFileMissing() from None

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return rest()


# --- several documents: one ZIP, streamed -------------------------------------------------------


@router.post("/{dataset_id}/documents/download-zip")
async def download_zip(request: Request, dataset_id: str, body: api.DocumentIdsRequest,
                       key: ApiKeyPrincipal = DatasetKey) -> StreamingResponse:
    """Dify's DocumentBatchDownloadZipApi: the documents' files in the order asked, entry
    names made safe and unique, the archive named `<random>.zip`."""
    c = get_container(request)
    dataset = await dataset_of(request, key, dataset_id)
    wanted = list(dict.fromkeys(body.document_ids))
    found = await kq.documents_by_id(c.engine, dataset["id"], wanted)
    if len(found) != len(wanted):
        raise DocumentNotFound()
    sources = [found[d]["source"] for d in wanted]
    for source in sources:  # every file is there before the answer starts
        if not await c.storage.exists(source["key"]):
            raise UploadedFileMissing()
    return StreamingResponse(
        _zip_stream(c.storage, sources), media_type="application/zip",
        headers={"Content-Disposition": content_disposition("attachment",
                                                            f"{uuid4().hex}.zip")})


class _Drain:
    """A write-only file zipfile writes into, emptied after each write: the archive leaves
    as it is made (zipfile writes data descriptors to a stream it cannot seek)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def zip_entry_names(names: Iterable[str]) -> list[str]:
    """Base names only (no directories, no separators), made unique as Dify does:
    `doc.txt`, `doc (1).txt`, …"""
    used: set[str] = set()
    out = []
    for name in names:
        base = posixpath.basename(name.replace("\\", "/")).strip() or "file"
        candidate, stem, extension, n = base, *posixpath.splitext(base), 0
        while candidate in used:
            n += 1
            candidate = f"{stem} ({n}){extension}"
        used.add(candidate)
        out.append(candidate)
    return out


async def _zip_stream(storage: Storage, sources: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    sink = _Drain()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source, name in zip(sources, zip_entry_names(s["name"] for s in sources),
                                strict=True):
            with archive.open(name, mode="w") as entry:
                async for chunk in storage.stream(source["key"]):
                    # deflating a chunk is CPU work: off the event loop
                    await asyncio.to_thread(entry.write, chunk)
                    if data := sink.take():
                        yield data
            yield sink.take()
    yield sink.take()
