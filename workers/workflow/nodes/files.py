"""The bytes of a file in the variable pool (workflow_graph/files.py): an upload or a file a
node made is read from storage, under the run's tenant (a mapping naming another tenant
reaches nothing of it); a remote file is fetched through the SSRF guard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from adapters.http.ssrf_guard import AllowList, UrlRefused, guarded_request
from adapters.storage.base import FileNotFoundInStorage
from schemas.conversation.naming import upload_key
from schemas.workflow.naming import tool_file_key
from workers.workflow.nodes.base import NodeCall
from workflow_graph.files import LOCAL_FILE, REMOTE_URL, TOOL_FILE


class FileUnavailable(Exception):
    """The file's bytes cannot be had; the message says which file and why."""


async def load_file(call: NodeCall, file: Mapping[str, Any]) -> bytes:
    name = file.get("filename") or file.get("related_id") or file.get("remote_url")
    method = file.get("transfer_method")
    if method == REMOTE_URL:
        return await _fetch(call, str(file.get("remote_url") or file.get("url") or ""))
    try:
        file_id = UUID(str(file.get("related_id")))
    except ValueError:
        raise FileUnavailable(f"File {name} has no stored file id.") from None
    extension = str(file.get("extension") or "")
    if method == LOCAL_FILE:
        key = upload_key(call.run.tenant_id, file_id, extension.lstrip("."))
    elif method == TOOL_FILE:
        key = tool_file_key(call.run.tenant_id, file_id, extension)
    else:
        raise FileUnavailable(f"File {name} has an unknown transfer method {method!r}.")
    try:
        return await call.services.storage.load(key)
    except FileNotFoundInStorage:
        raise FileUnavailable(f"File {name} is not in storage.") from None


async def _fetch(call: NodeCall, url: str) -> bytes:
    settings = call.services.settings
    try:
        fetched = await guarded_request("GET", url, AllowList.parse(settings.SSRF_ALLOWED_HOSTS),
                                        max_bytes=settings.UPLOAD_FILE_SIZE_LIMIT * 1024 * 1024)
    except UrlRefused as refused:
        raise FileUnavailable(f"Error downloading file: {refused}") from None
    if not 200 <= fetched.status < 300:
        raise FileUnavailable(f"Error downloading file: {url} answered HTTP {fetched.status}.")
    return fetched.body
