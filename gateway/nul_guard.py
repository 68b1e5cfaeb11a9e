"""Text with a NUL character (U+0000) is refused at the edge, for every route at once.

No field of Dify's API means a NUL, and Postgres text and jsonb columns cannot hold one: an
event carrying it would be recorded and then fail in every read model. So a request whose
path, query or JSON body holds one is answered 400 `invalid_param` here, before any route
runs; multipart forms are parsed by `gateway/uploads.py`, which checks their fields and
file names (`refuse_nul_in_form`). File contents are not text: documents are cleaned of NUL
when their text is extracted (`indexing/extract.py`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import eddy_error_response
from schemas.errors import NulCharacter

NUL = "\x00"
_JSON_NUL = b"\\u0000"  # the only way JSON can carry a NUL inside a string


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(NUL in k or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _refused(where: str) -> NulCharacter:
    return NulCharacter(f"{where} must not contain the NUL character (\\u0000).")


def refuse_nul_in_form(form: FormData) -> None:
    """Raises NulCharacter when a form's field names, values, or a file's name or type
    carry a NUL (the file's bytes are its own business)."""
    for name, value in form.multi_items():
        if NUL in name:
            raise _refused("A form field name")
        if isinstance(value, UploadFile):
            if NUL in (value.filename or "") or NUL in (value.content_type or ""):
                raise _refused(f"The name or type of the file in {name!r}")
        elif NUL in value:
            raise _refused(f"Form field {name!r}")


class RefuseNul:
    """ASGI middleware: a NUL in the path, the query string or a JSON body is a 400. Bodies
    other than multipart are read ahead (routes read them whole anyway) and handed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem: NulCharacter | None = None
        if NUL in scope["path"]:
            problem = _refused("The path")
        elif NUL in unquote(scope["query_string"].decode("latin-1")):
            problem = _refused("A query parameter")
        elif not _content_type(scope).startswith("multipart/"):
            body, receive = await _read_ahead(receive)
            if _JSON_NUL in body and _json_holds_nul(body):
                problem = _refused("Text in the request body")
        if problem is None:
            await self.app(scope, receive, send)
            return
        await eddy_error_response(problem)(scope, receive, send)


def _content_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1").lower())
    return ""


def _json_holds_nul(body: bytes) -> bool:
    try:
        return _holds_nul(orjson.loads(body))
    except orjson.JSONDecodeError:
        return False  # not JSON: the route refuses it in its own words


async def _read_ahead(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a receive that hands it on as one message."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"", _replay([message], receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()  # after the body: a disconnect, when it comes

    return replayed
