"""Command handlers: small functions, registered in one dict, that load aggregates and decide.

A handler gets the command payload and a unit of work; it returns the result the gateway
answers with. Raising an EddyError rejects the command and records nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from commands.aggregates import SETUP_ID, Account, ApiKey, App, Setup, Workspace
from commands.unit_of_work import UnitOfWork
from schemas import commands as cmd
from schemas import events as ev

P = TypeVar("P", bound=cmd.CommandPayload)
Handler = Callable[[Any, UnitOfWork], dict[str, Any]]


def setup_platform(c: cmd.SetupPlatform, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(Setup, SETUP_ID).complete(c.account_id, c.workspace_id, uow.ctx)
    uow.get(Account, c.account_id).register(
        c.email, c.name, c.password_hash, c.interface_language, uow.ctx
    )
    uow.get(Workspace, c.workspace_id).create(f"{c.name}'s Workspace", c.account_id, uow.ctx)
    return {"account_id": str(c.account_id), "workspace_id": str(c.workspace_id)}


def create_app(c: cmd.CreateApp, uow: UnitOfWork) -> dict[str, Any]:
    assert uow.ctx.actor_id is not None
    payload = ev.AppCreated(
        **c.model_dump(exclude={"app_id"}), created_by=uow.ctx.actor_id
    )
    uow.get(App, c.app_id).create(payload, uow.ctx)
    return {"app_id": str(c.app_id)}


def update_app(c: cmd.UpdateApp, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).update(c.model_dump(exclude={"app_id"}), uow.ctx)
    return {"app_id": str(c.app_id)}


def delete_app(c: cmd.DeleteApp, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(App, c.app_id).delete(uow.ctx)
    return {"app_id": str(c.app_id)}


def _ensure_owner_resource(app_id: UUID | None, uow: UnitOfWork) -> None:
    if app_id is not None:
        uow.get(App, app_id).ensure_visible_to(uow.ctx.tenant_id)


def create_api_key(c: cmd.CreateApiKey, uow: UnitOfWork) -> dict[str, Any]:
    _ensure_owner_resource(c.app_id, uow)
    uow.get(ApiKey, c.key_id).create(c.key_type, c.app_id, c.token, uow.ctx)
    return {"key_id": str(c.key_id)}


def revoke_api_key(c: cmd.RevokeApiKey, uow: UnitOfWork) -> dict[str, Any]:
    _ensure_owner_resource(c.app_id, uow)
    uow.get(ApiKey, c.key_id).revoke(c.key_type, c.app_id, uow.ctx)
    return {"key_id": str(c.key_id)}


HANDLERS: dict[str, tuple[type[cmd.CommandPayload], Handler]] = {
    cmd.SetupPlatform.command_type: (cmd.SetupPlatform, setup_platform),
    cmd.CreateApp.command_type: (cmd.CreateApp, create_app),
    cmd.UpdateApp.command_type: (cmd.UpdateApp, update_app),
    cmd.DeleteApp.command_type: (cmd.DeleteApp, delete_app),
    cmd.CreateApiKey.command_type: (cmd.CreateApiKey, create_api_key),
    cmd.RevokeApiKey.command_type: (cmd.RevokeApiKey, revoke_api_key),
}
