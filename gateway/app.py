"""The FastAPI application: routers, error mapping, correlation ids."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from uuid import uuid4

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from gateway import health, metrics, status
from gateway.commanding import CommandGateway, CommandPending
from gateway.container import GatewayContainer
from gateway.deps import maybe_uuid
from gateway.errors import install_error_handlers, unexpected_error_response
from gateway.nul_guard import RefuseNul
from gateway.params import without_empty_values
from observability import correlation_id


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    for hook in app.state.on_shutdown:  # e.g. what is still batched goes out before the end
        await hook()


def create_app(container: GatewayContainer) -> FastAPI:
    app = FastAPI(title="Eddy", version="0.1.0", lifespan=_lifespan)
    app.state.container = container
    app.state.command_gateway = CommandGateway(container)
    app.state.on_shutdown = []  # async callables, run when the server stops
    install_error_handlers(app)
    app.add_middleware(RefuseNul)  # inside _correlate below: refusals get ids and metrics

    @app.exception_handler(CommandPending)
    async def _pending(request: Request, exc: CommandPending) -> JSONResponse:
        # Each API's own status URL: a Service API key cannot call the console's.
        service_api = request.url.path.startswith("/v1/")
        return JSONResponse(status_code=202, content={
            "result": "accepted",
            "command_id": str(exc.command_id),
            "status_url": f"/v1/commands/{exc.command_id}" if service_api
            else f"/console/api/commands/{exc.command_id}",
        })

    @app.middleware("http")
    async def _correlate(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # The correlation id travels with commands and events as a UUID: anything else a
        # client sends is replaced, never trusted.
        cid = str(maybe_uuid(request.headers.get("X-Request-Id")) or uuid4())
        token = correlation_id.set(cid)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # typed errors were answered inside; this is the rest
            response = unexpected_error_response(exc)
        finally:
            correlation_id.reset(token)
        metrics.observe_request(request, response.status_code, time.perf_counter() - started)
        response.headers["X-Request-Id"] = cid
        return response

    @app.middleware("http")
    async def _empty_query_values_absent(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.startswith("/v1/") and request.scope["query_string"]:
            request.scope["query_string"] = without_empty_values(request.scope["query_string"])
        return await call_next(request)

    for context in container.contexts:
        for router in context.routers:
            app.include_router(router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(status.router)
    return app
