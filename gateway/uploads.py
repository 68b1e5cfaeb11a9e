"""Multipart uploads with one file, for every context's upload endpoints: the body is
refused while it streams in once past the limit (never spooled whole first), and Dify's
errors for a missing file or more than one."""

from __future__ import annotations

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from gateway.nul_guard import refuse_nul_in_form
from schemas.errors import BadRequest, FileTooLarge, NoFileUploaded, TooManyFiles

# Room in a multipart body for its framing and the small fields around the file (Starlette
# caps each non-file field at 1 MiB); the file itself is checked exactly once read.
FORM_OVERHEAD = 1024 * 1024


def too_large(limit_mb: int) -> FileTooLarge:
    return FileTooLarge(f"File size exceeded. Max {limit_mb} MB.")


def _capped(receive: Receive, cap: int, limit_mb: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise too_large(limit_mb)
        return message

    return counted


async def one_file(request: Request, limit_mb: int) -> tuple[UploadFile, FormData]:
    """The form's single `file` (at most `limit_mb`, checked again when read) and the form."""
    cap = limit_mb * 1024 * 1024 + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large(limit_mb)  # before reading a byte of the body
    try:
        form = await Request(request.scope, _capped(request.receive, cap, limit_mb)).form()
    except FileTooLarge:
        raise
    except Exception:
        raise BadRequest("Expected multipart/form-data with a file.") from None
    refuse_nul_in_form(form)
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not files:
        raise NoFileUploaded()
    if len(files) > 1:
        raise TooManyFiles()
    return files[0], form


async def read_limited(file: UploadFile, limit_mb: int) -> bytes:
    data = await file.read(limit_mb * 1024 * 1024 + 1)
    if len(data) > limit_mb * 1024 * 1024:
        raise too_large(limit_mb)
    return data
