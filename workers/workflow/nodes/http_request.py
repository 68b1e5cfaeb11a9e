"""The `http-request` node, as Dify's (core/workflow/nodes/http_request): method, URL,
headers and params with `{{#node.var#}}` templates, api-key authorization (basic, bearer,
custom header), the body types, timeouts capped by HTTP_REQUEST_MAX_*_TIMEOUT, answers over
HTTP_REQUEST_NODE_MAX_TEXT_SIZE / MAX_BINARY_SIZE refused with Dify's message, and a file
answer kept in storage and output as a file.

Every request goes through the SSRF guard (SSRF_ALLOWED_HOSTS lets a private host through)
and carries `Idempotency-Key: <call.idempotency_key>` unless the node sets one: the same on
the engine's retries and on a takeover, so the receiver can tell a repeat. Retries are the
engine's (the node's retry_config); a failure here says what failed."""

from __future__ import annotations

import base64
import json
import mimetypes
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from uuid import UUID, uuid5

import httpx

from adapters.http.ssrf_guard import AllowList, BodyTooLarge, UrlRefused, guarded_request
from config import Settings
from schemas.base import EDDY_NAMESPACE
from schemas.workflow.naming import tool_file_key
from workers.ownership import still_owner
from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workers.workflow.nodes.files import FileUnavailable, load_file
from workflow_graph.files import extension_for, is_file, tool_file
from workflow_graph.variables import VariablePool

METHODS = frozenset({"get", "head", "post", "put", "delete", "patch", "options"})
IDEMPOTENCY_HEADER = "Idempotency-Key"
_DEFAULT_CONTENT_TYPES = {
    "json": "application/json",
    "x-www-form-urlencoded": "application/x-www-form-urlencoded",
    "raw-text": "text/plain",
}
_TEXT_APPLICATION_TYPES = ("json", "xml", "javascript", "x-www-form-urlencoded", "yaml",
                           "graphql")
_TEXT_MARKERS = (b"{", b"[", b"<", b"function", b"var ", b"const ", b"let ")


def _fail(message: str, error_type: str = "HttpRequestNodeError") -> NodeError:
    return NodeError(message, error_type)


@dataclass(frozen=True)
class _Body:
    content: bytes
    content_type: str | None = None  # None: the body sets none (raw-text, binary)
    # multipart: a Content-Type the user typed ("multipart/form-data") lacks our boundary
    replaces_content_type: bool = False


async def run(call: NodeCall) -> NodeResult:
    data = call.node.data
    settings: Settings = call.services.settings
    method = str(data.get("method") or "get").lower()
    if method not in METHODS:
        raise _fail(f"Invalid http method {method}", "InvalidHttpMethodError")
    url = _url(call.pool, data)
    headers = _headers(call.pool, str(data.get("headers") or ""))
    authorization = _authorization(call.pool, data.get("authorization") or {})
    headers.update(authorization)
    body = await _body(call, data.get("body"))
    if body.content_type and (body.replaces_content_type or not _has(headers, "content-type")):
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = body.content_type
    if not _has(headers, IDEMPOTENCY_HEADER):
        headers[IDEMPOTENCY_HEADER] = call.idempotency_key
    for name, value in headers.items():
        if not (name + value).isascii():
            raise _fail(f"Header {name} holds characters HTTP headers cannot carry (only "
                        "ASCII): percent-encode its value", "InvalidHeaderError")
    timeout, deadline = _timeout(settings, data.get("timeout") or {})
    text_limit = settings.HTTP_REQUEST_NODE_MAX_TEXT_SIZE
    binary_limit = settings.HTTP_REQUEST_NODE_MAX_BINARY_SIZE
    process_data = {"request": _request_log(method, url, headers, body, authorization)}
    # An outside effect: not from a member the run has moved away from (a stalled one
    # resumed); the one holding the run now sends it, with the same Idempotency-Key.
    await still_owner()
    try:
        answer = await guarded_request(
            method, url, AllowList.parse(settings.SSRF_ALLOWED_HOSTS),
            max_bytes=max(text_limit, binary_limit), headers=headers,
            content=body.content or None, timeout=timeout, deadline=deadline,
            verify=bool(data.get("ssl_verify", True)))
    except BodyTooLarge as refused:
        file_answer = _is_file(refused.headers, b"")
        limit = binary_limit if file_answer else text_limit
        declared = refused.headers.get("content-length", "")
        size = _readable_size(int(declared)) if declared.isdigit() \
            else f"more than {_readable_size(refused.max_bytes)}"
        raise _too_large(file_answer, limit, size) from None
    except UrlRefused as refused:
        raise _fail(str(refused)) from None
    file_answer = _is_file(answer.headers, answer.body)
    limit = binary_limit if file_answer else text_limit
    if len(answer.body) > limit:
        raise _too_large(file_answer, limit, _readable_size(len(answer.body)))
    if not 200 <= answer.status < 300 and _fails_on_bad_status(data):
        raise _fail(f"Request failed with status code {answer.status}", "HTTPResponseCodeError")
    files = [await _store_answer(call, answer.url, answer.headers, answer.body)] \
        if file_answer else []
    return NodeResult(outputs={
        "status_code": answer.status,
        "body": "" if files else _text(answer.headers, answer.body),
        "headers": dict(answer.headers),
        "files": files,
    }, process_data=process_data)


def _url(pool: VariablePool, data: Mapping[str, Any]) -> str:
    url = pool.render(str(data.get("url") or ""))
    if not url:
        raise _fail("url is required", "InvalidURLError")
    if not url.startswith(("http://", "https://")):
        raise _fail("url should start with http:// or https://", "InvalidURLError")
    params = []
    for line in str(data.get("params") or "").splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip():
            params.append((pool.render(key.strip()), pool.render(value.strip())))
    try:
        # percent-encoded, as httpx sends it (a rendered value may hold spaces or accents)
        parsed = httpx.URL(url)
        return str(parsed.copy_merge_params(params) if params else parsed)
    except httpx.InvalidURL as error:
        raise _fail(f"Invalid URL {url}: {error}", "InvalidURLError") from None


def _headers(pool: VariablePool, template: str) -> dict[str, str]:
    """Dify's header text: one `name: value` a line, the whole text rendered first."""
    headers: dict[str, str] = {}
    for line in pool.render(template).splitlines():
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip()] = value.strip()
    return headers


def _authorization(pool: VariablePool, auth: Mapping[str, Any]) -> dict[str, str]:
    if auth.get("type", "no-auth") != "api-key":
        return {}
    config = auth.get("config")
    if not isinstance(config, Mapping):
        raise _fail("authorization config is required", "AuthorizationConfigError")
    if config.get("api_key") is None:
        raise _fail("api_key is required", "AuthorizationConfigError")
    api_key = pool.render(str(config["api_key"]))
    header = str(config.get("header") or "Authorization")
    match config.get("type"):
        case "bearer":
            return {header: f"Bearer {api_key}"}
        case "basic":
            # "user:password" is encoded; anything else is taken as already encoded
            encoded = base64.b64encode(api_key.encode()).decode() if ":" in api_key \
                else api_key
            return {header: f"Basic {encoded}"}
        case "custom":
            return {header: api_key}
    raise _fail(f"unknown authorization type {config.get('type')!r}",
                "AuthorizationConfigError")


def _items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The body's items; an old DSL's body `data` is one text."""
    data = body.get("data")
    if not data:
        return []
    if isinstance(data, str):
        return [{"key": "", "type": "text", "value": data}]
    return [item for item in data if isinstance(item, Mapping)]


def _single(items: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    if len(items) != 1:
        raise _fail(f"{kind} body type should have exactly one item", "RequestBodyError")
    return items[0]


async def _body(call: NodeCall, body: Any) -> _Body:
    if not isinstance(body, Mapping):
        return _Body(b"")
    kind = str(body.get("type") or "none")
    items = _items(body)
    pool = call.pool
    match kind:
        case "none":
            return _Body(b"")
        case "raw-text":
            text = pool.render(str(_single(items, kind).get("value") or ""))
            return _Body(text.encode())
        case "json":
            text = pool.render(str(_single(items, kind).get("value") or ""))
            try:
                value = json.loads(text, strict=False)
            except json.JSONDecodeError:
                raise _fail(f"Failed to parse JSON: {text}", "RequestBodyError") from None
            encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            return _Body(encoded.encode(), _DEFAULT_CONTENT_TYPES[kind])
        case "x-www-form-urlencoded":
            fields = {pool.render(str(i.get("key") or "")): pool.render(str(i.get("value") or ""))
                      for i in items}
            return _Body(urlencode(fields).encode(), _DEFAULT_CONTENT_TYPES[kind])
        case "binary":
            selector = _single(items, kind).get("file") or []
            file = pool.get(selector)
            if not is_file(file):
                raise _fail(f"cannot fetch file with selector {list(selector)}",
                            "FileFetchError")
            return _Body(await _load(call, file))
        case "form-data":
            return await _multipart(call, items)
    raise _fail(f"unknown body type {kind!r}", "RequestBodyError")


async def _multipart(call: NodeCall, items: Sequence[Mapping[str, Any]]) -> _Body:
    """multipart/form-data even when no file is given (a server asked for it expects it)."""
    boundary = secrets.token_hex(16)
    parts: list[bytes] = []
    for item in items:
        name = call.pool.render(str(item.get("key") or ""))
        if item.get("type") == "file":
            value = call.pool.get(item.get("file") or [])
            files = [value] if is_file(value) else \
                [v for v in value if is_file(v)] if isinstance(value, list) else []
            for file in files:
                parts.append(_part(boundary, name, await _load(call, file),
                                   filename=str(file.get("filename") or ""),
                                   mime_type=str(file.get("mime_type")
                                                 or "application/octet-stream")))
        else:
            parts.append(_part(boundary, name,
                               call.pool.render(str(item.get("value") or "")).encode()))
    content = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return _Body(content, f"multipart/form-data; boundary={boundary}",
                 replaces_content_type=True)


def _part(boundary: str, name: str, content: bytes, *, filename: str | None = None,
          mime_type: str = "") -> bytes:
    disposition = f'form-data; name="{_quoted(name)}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}"
    if filename is not None:
        head += f'; filename="{_quoted(filename)}"\r\nContent-Type: {mime_type}'
    return head.encode() + b"\r\n\r\n" + content + b"\r\n"


def _quoted(value: str) -> str:
    # HTML5's form encoding: quotes and line breaks percent-encoded in part headers
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


async def _load(call: NodeCall, file: Mapping[str, Any]) -> bytes:
    try:
        return await load_file(call, file)
    except FileUnavailable as error:
        raise _fail(str(error), "FileFetchError") from None


def _has(headers: Mapping[str, str], name: str) -> bool:
    return any(h.lower() == name.lower() for h in headers)


def _timeout(settings: Settings, configured: Mapping[str, Any]) -> tuple[httpx.Timeout, float]:
    """The node's timeouts (seconds; unset or 0: the maximum), each capped by its maximum,
    and the deadline of the whole exchange (their sum: a server dripping its answer a byte
    at a time within the read timeout ends too)."""
    def capped(name: str, maximum: float) -> float:
        value = configured.get(name)
        return min(float(value), maximum) if isinstance(value, (int, float)) and value > 0 \
            else maximum
    connect = capped("connect", settings.HTTP_REQUEST_MAX_CONNECT_TIMEOUT)
    read = capped("read", settings.HTTP_REQUEST_MAX_READ_TIMEOUT)
    write = capped("write", settings.HTTP_REQUEST_MAX_WRITE_TIMEOUT)
    return (httpx.Timeout(connect=connect, read=read, write=write, pool=connect),
            connect + read + write)


def _fails_on_bad_status(data: Mapping[str, Any]) -> bool:
    """Dify fails the node on a non-2xx answer only when the node can act on it: an error
    strategy (default value, fail branch) or retries are set; else the answer is output."""
    retry = data.get("retry_config")
    return bool(data.get("error_strategy")) or (
        isinstance(retry, Mapping) and bool(retry.get("retry_enabled")))


def _content_disposition(headers: httpx.Headers) -> Message | None:
    value = headers.get("content-disposition")
    if not value:
        return None
    message = Message()
    message["content-disposition"] = value
    return message


def _is_file(headers: httpx.Headers, body: bytes) -> bool:
    """Dify's `Response.is_file`: an attachment or a named file; else by content type, an
    `application/` type whose first KiB decodes as text with a text marker being text."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    disposition = _content_disposition(headers)
    if disposition is not None and (disposition.get_content_disposition() == "attachment"
                                     or disposition.get_filename() is not None):
        return True
    if content_type.startswith("text/") and "csv" not in content_type:
        return False
    if content_type.startswith("application/"):
        if any(kind in content_type for kind in _TEXT_APPLICATION_TYPES):
            return False
        sample = body[:1024]
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError:
            return True
        if any(marker in sample for marker in _TEXT_MARKERS):
            return False
    guessed = mimetypes.guess_type("dummy" + (mimetypes.guess_extension(content_type) or ""))[0]
    if guessed:
        return guessed.split("/")[0] in ("application", "image", "audio", "video")
    return any(kind in content_type for kind in ("image/", "audio/", "video/"))


def _readable_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.2f} KB"
    return f"{size / 1024 / 1024:.2f} MB"


def _too_large(file_answer: bool, limit: int, size: str) -> NodeError:
    return _fail(f"{'File' if file_answer else 'Text'} size is too large, max size is "
                 f"{limit / 1024 / 1024:.2f} MB, but current size is {size}.",
                 "ResponseSizeError")


def _text(headers: httpx.Headers, body: bytes) -> str:
    charset = _charset(headers) or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _charset(headers: httpx.Headers) -> str | None:
    message = Message()
    message["content-type"] = headers.get("content-type", "")
    charset = message.get_content_charset()
    return str(charset) if charset else None


async def _store_answer(call: NodeCall, url: str, headers: httpx.Headers,
                        body: bytes) -> dict[str, Any]:
    """The answer kept as a file the run's later nodes can use. Its id follows from the
    node's idempotency key, so a retried or taken-over node overwrites, never adds."""
    disposition = _content_disposition(headers)
    named = (disposition.get_filename() if disposition is not None else None) or ""
    url_name = urlsplit(url).path.rsplit("/", 1)[-1]
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    mime_type = (mimetypes.guess_type(named)[0] if named else None) or content_type \
        or mimetypes.guess_type(url_name)[0] or "application/octet-stream"
    file_id = uuid5(EDDY_NAMESPACE, f"workflow-tool-file:{call.idempotency_key}")
    filename = named or url_name or str(file_id)
    extension = extension_for(filename, mime_type)
    if "." not in filename:
        filename += extension
    tenant_id: UUID = call.run.tenant_id
    await call.services.storage.save(tool_file_key(tenant_id, file_id, extension), body)
    return tool_file(file_id=str(file_id), tenant_id=str(tenant_id), filename=filename,
                     extension=extension, mime_type=mime_type, size=len(body))


def _request_log(method: str, url: str, headers: Mapping[str, str], body: _Body,
                 authorization: Mapping[str, str]) -> str:
    """The request as Dify's process_data shows it (raw HTTP), the credentials masked."""
    parts = urlsplit(url)
    target = quote(parts.path or "/", safe="/%:@") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method.upper()} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    masked = {name.lower() for name in authorization}
    lines += [f"{name}: {'*' * len(value) if name.lower() in masked else value}"
              for name, value in headers.items()]
    try:
        shown = body.content.decode("utf-8")
    except UnicodeDecodeError:  # a file's bytes: their size says enough
        shown = f"<{len(body.content)} bytes of binary data>"
    return "\r\n".join(lines) + "\r\n\r\n" + shown
