"""What the knowledge Service API routes share besides the lookups (lookups.py): sending a
command as the key's workspace, paging, length limits."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Query, Request

from gateway.auth import ApiKeyPrincipal
from gateway.deps import command_gateway
from schemas.base import CommandPayload
from schemas.errors import BadRequest

PageParam = Annotated[int, Query(ge=1, le=99999)]
LimitParam = Annotated[int, Query(ge=1)]
MAX_PAGE_SIZE = 100  # Dify caps a larger `limit` to this (max_per_page), it does not refuse it


def page_size(limit: int) -> int:
    return min(limit, MAX_PAGE_SIZE)


async def send(request: Request, key: ApiKeyPrincipal, payload: CommandPayload,
               aggregate_id: UUID) -> Any:
    """Send a command as the key's workspace; answered once its events are projected."""
    return await command_gateway(request).send(payload, aggregate_id=aggregate_id,
                                               tenant_id=key.tenant_id, actor_id=key.actor_id)


def check_length(field: str, value: str | None, limit: int) -> None:
    """Refuse over-long text before any lookup or write (limits are settings)."""
    if value is not None and len(value) > limit:
        raise BadRequest(f"{field} is too long: {len(value)} characters, at most {limit}.")
