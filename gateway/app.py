"""The FastAPI application: routers, error mapping, correlation ids."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import uuid4

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
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


class RequestEdge:
    """Every HTTP request's edge work, as plain ASGI (Starlette's `@app.middleware("http")`
    runs the route in a task of its own and passes every chunk of a streamed answer
    through a memory stream: CPU per request and per SSE event): empty query values on the
    Service API are absent; a correlation id (a UUID: anything else a client sends is
    replaced, never trusted) travels with the commands and events the request causes and
    comes back as X-Request-Id; the request's status and time to its headers are observed;
    an error no handler answered is Eddy's 500 (or 503 when a dependency is down)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("/v1/") and scope["query_string"]:
            scope["query_string"] = without_empty_values(scope["query_string"])
        request = Request(scope)
        cid = str(maybe_uuid(request.headers.get("X-Request-Id")) or uuid4())
        started = time.perf_counter()
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                metrics.observe_request(request, message["status"],
                                        time.perf_counter() - started)
                message.setdefault("headers", [])
                MutableHeaders(scope=message)["X-Request-Id"] = cid
            await send(message)

        token = correlation_id.set(cid)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # typed errors were answered inside; this is the rest
            if answered:  # mid-stream: the client sees the connection end
                raise
            await unexpected_error_response(exc)(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


def create_app(container: GatewayContainer) -> FastAPI:
    app = FastAPI(title="Eddy", version="0.1.0", lifespan=_lifespan)
    app.state.container = container
    app.state.command_gateway = CommandGateway(container)
    app.state.on_shutdown = []  # async callables, run when the server stops
    install_error_handlers(app)
    app.add_middleware(RefuseNul)
    app.add_middleware(RequestEdge)  # outside RefuseNul: refusals get ids and metrics

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
