"""Every error leaves the gateway in Dify's shape {"code", "message", "status"}; mapped once."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.embeddings.base import EmbeddingError
from adapters.http.ssrf_guard import UrlRefused
from adapters.llm.openai_protocol import ProviderError
from adapters.outside import OutsideServiceError
from adapters.transient import is_transient
from schemas.errors import (
    BadRequest,
    CompletionRequestError,
    EddyError,
    RemoteFileRefused,
    ServiceUnavailable,
)
from workflow_graph.errors import WorkflowGraphError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "request_entity_too_large", 415: "unsupported_media_type",
    422: "invalid_param", 429: "too_many_requests",
}


RETRY_AFTER_SECONDS = 2


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "status": status}, status_code=status)


def eddy_error_response(exc: EddyError) -> JSONResponse:
    response = error_response(exc.status, exc.code, exc.message)
    if isinstance(exc, ServiceUnavailable):
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err["type"] == "json_invalid":
            return "Invalid JSON body."
        loc = ".".join(str(p) for p in err["loc"] if p not in ("body", "query", "path"))
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts) or "Invalid parameters."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EddyError)
    async def _eddy(_: Request, exc: EddyError) -> JSONResponse:
        return eddy_error_response(exc)

    @app.exception_handler(UrlRefused)
    async def _url_refused(_: Request, exc: UrlRefused) -> JSONResponse:
        return eddy_error_response(RemoteFileRefused(str(exc)))

    @app.exception_handler(WorkflowGraphError)
    async def _bad_graph(_: Request, exc: WorkflowGraphError) -> JSONResponse:
        # A draft's graph or a DSL document that cannot be saved: the message names the
        # node, edge or field.
        return eddy_error_response(BadRequest(str(exc)))

    @app.exception_handler(ProviderError)
    @app.exception_handler(EmbeddingError)
    async def _model_failed(_: Request, exc: Exception) -> JSONResponse:
        # A model provider failed within its deadline and retries (timed out, 5xx, a bad
        # answer): the request fails as Dify's model invocation errors do.
        failed = CompletionRequestError(str(exc))
        return error_response(failed.status, failed.code, failed.message)

    @app.exception_handler(OutsideServiceError)
    async def _outside_failed(_: Request, exc: OutsideServiceError) -> JSONResponse:
        # Another outside service (S3) spent its budget: nothing was accepted, try later.
        log.warning("outside service failed", extra={"error": repr(exc)[:300]})
        response = error_response(503, "service_unavailable",
                                  "A service Eddy depends on did not answer; retry shortly.")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "invalid_param", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))



def unexpected_error_response(exc: BaseException) -> JSONResponse:
    """A dependency that is down answers 503 + Retry-After (the client may retry: nothing
    was accepted); anything else is a bug: 500. Neither echoes the exception's text."""
    if is_transient(exc):
        log.warning("dependency unavailable", extra={"error": repr(exc)[:300]})
        response = error_response(503, "service_unavailable",
                                  "A service Eddy depends on is unavailable; retry shortly.")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_server_error", "Internal Server Error")
