"""Files for messages (Service API): `POST /v1/files/upload` stores the file through the
storage interface and records it; `GET /v1/files/{id}/preview` serves it back to the app
it was uploaded to. Dify's limits per kind of file and its error codes."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

from fastapi import APIRouter, Request, Response

from adapters.http.ssrf_guard import AllowList, guarded_request
from adapters.storage.base import FileNotFoundInStorage
from config import Settings
from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.deps import command_gateway, get_container, parse_id
from gateway.platform.service import app_of_key
from gateway.uploads import one_file, read_limited, too_large
from gateway.views import content_disposition
from projections.conversation import queries
from schemas.conversation import commands as cmd
from schemas.conversation.naming import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    end_user_id_for,
    upload_key,
)
from schemas.errors import (
    BadRequest,
    FilenameMissing,
    RemoteFileRefused,
    UnsupportedFileType,
    UploadFileNotFound,
)

router = APIRouter(prefix="/v1")


def size_limit_mb(settings: Settings, extension: str) -> int:
    if extension in IMAGE_EXTENSIONS:
        return settings.UPLOAD_IMAGE_FILE_SIZE_LIMIT
    if extension in AUDIO_EXTENSIONS:
        return settings.UPLOAD_AUDIO_FILE_SIZE_LIMIT
    if extension in VIDEO_EXTENSIONS:
        return settings.UPLOAD_VIDEO_FILE_SIZE_LIMIT
    return settings.UPLOAD_FILE_SIZE_LIMIT


def file_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "reference": None, "name": row["name"], "size": row["size"],
        "extension": row["extension"], "mime_type": row["mime_type"],
        "created_by": str(row["end_user_id"]), "created_at": int(row["created_at"].timestamp()),
        "preview_url": None, "source_url": f"/v1/files/{row['id']}/preview",
        "original_url": None, "user_id": None, "tenant_id": str(row["tenant_id"]),
        "conversation_id": None, "file_key": None,
    }


@router.post("/files/upload", status_code=201)
async def upload(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    c = get_container(request)
    app = await app_of_key(request, key)
    settings = c.settings
    largest = max(settings.UPLOAD_FILE_SIZE_LIMIT, settings.UPLOAD_IMAGE_FILE_SIZE_LIMIT,
                  settings.UPLOAD_AUDIO_FILE_SIZE_LIMIT, settings.UPLOAD_VIDEO_FILE_SIZE_LIMIT)
    file, form = await one_file(request, largest)
    user = form.get("user")
    if not isinstance(user, str) or not user.strip():
        raise BadRequest("user is required.")
    name = file.filename or ""
    if not name:
        raise FilenameMissing()
    if "/" in name or "\\" in name:
        raise BadRequest("Filename contains invalid characters.")
    mime_type = file.content_type or mimetypes.guess_type(name)[0]
    if not mime_type:
        raise UnsupportedFileType("The file declares no MIME type.")
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    limit = size_limit_mb(settings, extension)
    data = await read_limited(file, largest)
    if len(data) > limit * 1024 * 1024:
        raise too_large(limit)
    file_id = uuid4()
    storage_key = upload_key(key.tenant_id, file_id, extension)
    await c.storage.save(storage_key, data)
    await command_gateway(request).send(
        cmd.RecordFileUpload(file_id=file_id, app_id=app["id"], user=user.strip(), name=name,
                             size=len(data), extension=extension, mime_type=mime_type,
                             key=storage_key),
        aggregate_id=file_id, tenant_id=key.tenant_id, actor_id=key.actor_id)
    row = await queries.upload_file(c.engine, app["id"], file_id)
    assert row is not None  # projected before the answer (read-your-writes)
    return file_view(row)


@router.get("/files/{file_id}/preview")
async def preview(request: Request, file_id: str, as_attachment: bool = False,
                  key: ApiKeyPrincipal = AppKey) -> Response:
    c = get_container(request)
    app = await app_of_key(request, key)
    row = await queries.upload_file(c.engine, app["id"], parse_id(file_id, UploadFileNotFound))
    if row is None:
        raise UploadFileNotFound()
    try:
        data = await c.storage.load(row["key"])
    except FileNotFoundInStorage:  # the record outlived its bytes (removed from storage)
        raise UploadFileNotFound() from None
    headers = {"Content-Disposition": content_disposition("attachment", row["name"])} \
        if as_attachment else {}
    return Response(data, media_type=row["mime_type"], headers=headers)


async def check_remote_image(settings: Settings, url: str) -> None:
    """Like Dify, learn a remote file's type and size before the model is sent to it: a
    HEAD (a one-byte ranged GET where HEAD is not allowed) through the SSRF guard. Not an
    image, larger than UPLOAD_IMAGE_FILE_SIZE_LIMIT, or unreachable: RemoteFileRefused."""
    allow = AllowList.parse(settings.SSRF_ALLOWED_HOSTS)
    limit = settings.UPLOAD_IMAGE_FILE_SIZE_LIMIT * 1024 * 1024
    head = await guarded_request("HEAD", url, allow, max_bytes=0)
    if head.status in (405, 501):
        head = await guarded_request("GET", url, allow, max_bytes=limit,
                                     headers={"Range": "bytes=0-0"})
    if not 200 <= head.status < 300:
        raise RemoteFileRefused(f"The file URL answered HTTP {head.status}.")
    mime_type = (head.headers.get("content-type", "").split(";")[0].strip().lower()
                 or mimetypes.guess_type(urlsplit(head.url).path)[0] or "")
    if not mime_type.startswith("image/"):
        raise RemoteFileRefused(f"The file URL is not an image ({mime_type or 'no type'}).")
    total = head.headers.get("content-range", "").rpartition("/")[2]
    size = int(total) if total.isdigit() else int(head.headers.get("content-length") or 0)
    if size > limit:
        raise RemoteFileRefused(f"The image is larger than {settings.UPLOAD_IMAGE_FILE_SIZE_LIMIT}"
                                " MB.")


async def message_files(request: Request, app: dict[str, Any], user: str,
                        files: list[Any], image: Any) -> list[dict[str, Any]]:
    """A message's `files`, checked against the app's file_upload settings: what the chat
    processor needs to show each image to the model (a stored file's key, or its URL)."""
    if not files:
        return []
    if not image.enabled:
        raise BadRequest("File upload is not enabled for this app.")
    if len(files) > image.number_limits:
        raise BadRequest(f"At most {image.number_limits} files are allowed.")
    out = []
    for f in files:
        if f.type != "image":
            raise BadRequest(f"Files of type {f.type} are not supported; only images.")
        if f.transfer_method not in image.transfer_methods:
            raise BadRequest(f"transfer_method {f.transfer_method} is not allowed by this app.")
        if f.transfer_method == "remote_url":
            if not f.url:
                raise BadRequest("url is required for a remote_url file.")
            await check_remote_image(get_container(request).settings, f.url)
            out.append({"type": "image", "transfer_method": "remote_url", "url": f.url,
                        "detail": image.detail})
            continue
        row = await queries.upload_file(get_container(request).engine, app["id"],
                                        parse_id(f.upload_file_id or "", UploadFileNotFound))
        if row is None or row["end_user_id"] != end_user_id_for(app["id"], user):
            raise UploadFileNotFound()
        out.append({"type": "image", "transfer_method": "local_file",
                    "upload_file_id": str(row["id"]), "key": row["key"],
                    "mime_type": row["mime_type"], "detail": image.detail})
    return out
