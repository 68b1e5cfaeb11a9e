"""Service API (/v1) per Dify's published spec: app info and meta (parameters and site are
the conversation context's: they answer from the app's configuration)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request

from gateway.auth import ApiKeyPrincipal, AppKey, ServiceKey
from gateway.deps import command_gateway, get_container, parse_id
from gateway.read_cache import cached
from projections.platform import queries
from schemas.errors import NotFound, Unauthorized

router = APIRouter(prefix="/v1")


async def app_of_key(request: Request, key: ApiKeyPrincipal) -> dict[str, Any]:
    """The key's app (kept by this process until a projection notice names the app, its
    workspace or its author, whose name it carries)."""
    app_id, tenant_id = key.app_id, key.tenant_id
    assert app_id is not None

    async def load() -> tuple[dict[str, Any], tuple[UUID, ...]] | None:
        row = await queries.app_in_workspace(get_container(request).engine, tenant_id, app_id)
        return None if row is None else (row, (app_id, tenant_id, row["created_by"]))

    row = await cached(request, "apps_of_keys", (tenant_id, app_id), load)
    if row is None:  # the app went away with its keys
        raise Unauthorized("Access token is invalid.")
    return dict(row)  # the caller's copy


@router.get("/commands/{command_id}")
async def command_status(request: Request, command_id: str,
                         key: ApiKeyPrincipal = ServiceKey) -> dict[str, Any]:
    """The status_url of a Service API 202 (the command was accepted, its outcome was not
    ready in time)."""
    return await command_gateway(request).status(parse_id(command_id, NotFound),
                                                 key.tenant_id)


@router.get("/info")
async def info(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await app_of_key(request, key)
    return {
        "name": app["name"],
        "description": app["description"],
        "tags": [],
        "mode": app["mode"],
        "author_name": app["author_name"] or "",
    }


@router.get("/meta")
async def meta(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    await app_of_key(request, key)
    return {"tool_icons": {}}
