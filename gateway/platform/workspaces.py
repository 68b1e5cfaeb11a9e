"""Console workspaces (Dify's api/controllers/console/workspace/workspace.py): the ones an
account belongs to, the one its console works in, switching between them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.auth import ConsoleUser, CurrentUser
from gateway.deps import command_gateway, get_container, maybe_uuid
from gateway.platform.views import tenant_view, workspace_list_item
from projections.platform import queries
from schemas.errors import AccountNotLinkTenant
from schemas.platform import api
from schemas.platform import commands as cmd

router = APIRouter(prefix="/console/api")


@router.get("/workspaces")
async def list_workspaces(request: Request, user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    rows = await queries.workspaces_of(get_container(request).engine, user.account_id)
    return {"workspaces": [workspace_list_item(r, current=r["id"] == user.tenant_id)
                           for r in rows]}


# Dify's console web asks with POST (its `/info` of old); GET answers the same.
@router.api_route("/workspaces/current", methods=["GET", "POST"])
async def current_workspace(request: Request, user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    row = await queries.workspace_of_member(get_container(request).engine, user.tenant_id,
                                            user.account_id)
    if row is None:  # removed between its authentication and here
        raise AccountNotLinkTenant()
    return tenant_view(row)


@router.post("/workspaces/switch")
async def switch_workspace(request: Request, body: api.SwitchWorkspaceRequest,
                           user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    target = maybe_uuid(body.tenant_id)
    engine = get_container(request).engine
    # Another workspace, or none, is one the account is not linked to (Dify's answer).
    if target is None or await queries.workspace_of_member(engine, target,
                                                           user.account_id) is None:
        raise AccountNotLinkTenant()
    await command_gateway(request).send(
        cmd.SwitchWorkspace(account_id=user.account_id, workspace_id=target),
        aggregate_id=user.account_id, tenant_id=target, actor_id=user.account_id)
    row = await queries.workspace_of_member(engine, target, user.account_id)
    if row is None:  # removed meanwhile
        raise AccountNotLinkTenant()
    return {"result": "success", "new_tenant": tenant_view(row)}
