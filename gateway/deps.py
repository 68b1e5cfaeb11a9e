"""Request-scoped access to the composition root's objects, and path id parsing."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from fastapi import Request

from gateway.container import GatewayContainer
from projections.registry import Projection
from projections.tables import PROJECTION_NAME
from schemas.errors import NotFound

if TYPE_CHECKING:
    from gateway.commanding import CommandGateway


def get_container(request: Request) -> GatewayContainer:
    return request.app.state.container  # type: ignore[no-any-return]


def console_projection(c: GatewayContainer) -> Projection:
    """The read model the console and Service API answer from."""
    return c.projections[PROJECTION_NAME]


def command_gateway(request: Request) -> CommandGateway:
    return request.app.state.command_gateway  # type: ignore[no-any-return]


def maybe_uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def parse_id(value: str, missing: type[NotFound]) -> UUID:
    """A path id; a malformed one is as unknown as a missing one (Dify answers 404 too)."""
    parsed = maybe_uuid(value)
    if parsed is None:
        raise missing()
    return parsed
