"""Files in the variable pool, shaped as Dify's `File.to_dict()` (what its events, outputs and
`sys.files` show): `type`, `transfer_method` (`local_file`: an upload, `tool_file`: made by a
node, `remote_url`), `related_id` (the stored file's id), `filename`, `extension` (with its
dot), `mime_type`, `size`. The bytes stay in storage; the pool holds only the mapping."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

FILE_IDENTITY: Final = "__dify__file__"
LOCAL_FILE: Final = "local_file"
TOOL_FILE: Final = "tool_file"
REMOTE_URL: Final = "remote_url"

# Dify's FileType by extension (core/file/constants + factories): the rest is "custom".
_DOCUMENT_EXTENSIONS = frozenset({
    "txt", "markdown", "md", "mdx", "pdf", "html", "htm", "xlsx", "xls", "doc", "docx", "csv",
    "eml", "msg", "pptx", "ppt", "xml", "epub", "json", "yaml", "yml", "vtt", "properties",
})


def is_file(value: Any) -> bool:
    return isinstance(value, Mapping) and (value.get("dify_model_identity") == FILE_IDENTITY
                                           or "transfer_method" in value)


def is_file_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(is_file(v) for v in value)


def file_type(extension: str, mime_type: str) -> str:
    """Dify's file kind (`image`, `audio`, `video`, `document`, `custom`)."""
    main = mime_type.split("/", 1)[0]
    if main in ("image", "audio", "video"):
        return main
    return "document" if extension.lstrip(".").lower() in _DOCUMENT_EXTENSIONS else "custom"


def extension_for(filename: str, mime_type: str) -> str:
    """The file's extension with its dot: from its name, else from its MIME type."""
    if "." in filename.rsplit("/", 1)[-1]:
        return "." + filename.rsplit(".", 1)[-1].lower()
    return mimetypes.guess_extension(mime_type) or ".bin"


def _file(transfer_method: str, *, file_id: str | None, tenant_id: str, filename: str,
          extension: str, mime_type: str, size: int, kind: str | None = None,
          remote_url: str | None = None) -> dict[str, Any]:
    return {
        "dify_model_identity": FILE_IDENTITY, "id": file_id, "tenant_id": tenant_id,
        "type": kind or file_type(extension, mime_type), "transfer_method": transfer_method,
        "remote_url": remote_url, "related_id": file_id, "filename": filename,
        "extension": extension, "mime_type": mime_type, "size": size, "url": remote_url,
    }


def tool_file(*, file_id: str, tenant_id: str, filename: str, extension: str,
              mime_type: str, size: int) -> dict[str, Any]:
    """A file a node made (an HTTP answer's body), kept in storage under `tool_file_key`."""
    return _file(TOOL_FILE, file_id=file_id, tenant_id=tenant_id, filename=filename,
                 extension=extension, mime_type=mime_type, size=size)


def uploaded_file(*, file_id: str, tenant_id: str, filename: str, extension: str,
                  mime_type: str, size: int, kind: str) -> dict[str, Any]:
    """A file uploaded through `/v1/files/upload` (its `extension` as stored: no dot)."""
    return _file(LOCAL_FILE, file_id=file_id, tenant_id=tenant_id, filename=filename,
                 extension=f".{extension}" if extension else "", mime_type=mime_type,
                 size=size, kind=kind)


def remote_file(*, url: str, tenant_id: str, kind: str) -> dict[str, Any]:
    """A file given by its URL: its name and type guessed from the URL's path (its bytes
    are fetched, through the SSRF guard, only by a node that reads them)."""
    filename = urlsplit(url).path.rsplit("/", 1)[-1]
    mime_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    extension = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _file(REMOTE_URL, file_id=None, tenant_id=tenant_id, filename=filename,
                 extension=extension, mime_type=mime_type, size=-1, kind=kind, remote_url=url)
