"""The FastAPI application: routers, error mapping, correlation ids."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import uuid4

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class Correlated:
    """Each request's correlation id, echoed as X-Request-Id; its time to the response's
    start observed; an unexpected error answered (500, or 503 for a dependency down).
    Also drops the Service API's empty query values. Plain ASGI: BaseHTTPMiddleware costs
    a task and a stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("/v1/") and scope["query_string"]:
            scope["query_string"] = without_empty_values(scope["query_string"])
        # The correlation id travels with commands and events as a UUID: anything else a
        # client sends is replaced, never trusted.
        cid = str(maybe_uuid(Headers(scope=scope).get("X-Request-Id")) or uuid4())
        started = time.perf_counter()
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                metrics.observe_request(Request(scope), message["status"],
                                        time.perf_counter() - started)
                MutableHeaders(scope=message)["X-Request-Id"] = cid
            await send(message)

        token = correlation_id.set(cid)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # typed errors were answered inside; this is the rest
            if answered:
                raise  # the answer has begun: nothing can replace it
            await unexpected_error_response(exc)(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


def create_app(container: GatewayContainer) -> FastAPI:
    app = FastAPI(title="Eddy", version="0.1.0", lifespan=_lifespan)
    app.state.container = container
    app.state.command_gateway = CommandGateway(container)
    app.state.on_shutdown = []  # async callables, run when the server stops
    install_error_handlers(app)
    app.add_middleware(RefuseNul)  # inside Correlated: refusals get ids and metrics
    app.add_middleware(Correlated)

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

    for context in container.contexts:
        for router in context.routers:
            app.include_router(router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(status.router)
    return app
