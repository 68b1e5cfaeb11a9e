"""Platform aggregates: the one-time setup, accounts, workspaces, apps and API keys."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.aggregate import Aggregate, Context
from schemas.errors import AlreadySetup, ApiKeyNotFound, AppNotFound, BadRequest
from schemas.platform import events as ev


class Setup(Aggregate):
    """The platform's one-time setup; its single version makes a second setup impossible."""

    def apply_SetupCompleted(self, p: ev.SetupCompleted) -> None:
        pass

    def complete(self, account_id: UUID, workspace_id: UUID, ctx: Context) -> None:
        if self.exists:
            raise AlreadySetup()
        self.record(ev.SetupCompleted(account_id=account_id, workspace_id=workspace_id), ctx)


class Account(Aggregate):
    def apply_AccountRegistered(self, p: ev.AccountRegistered) -> None:
        self.email = p.email

    def register(self, email: str, name: str, password_hash: str, language: str,
                 ctx: Context) -> None:
        if self.exists:
            raise BadRequest("Account already exists.")
        self.record(
            ev.AccountRegistered(
                email=email, name=name, password_hash=password_hash, interface_language=language
            ),
            ctx,
        )


class Workspace(Aggregate):
    def apply_WorkspaceCreated(self, p: ev.WorkspaceCreated) -> None:
        self.name = p.name

    def create(self, name: str, owner_account_id: UUID, ctx: Context) -> None:
        self.record(
            ev.WorkspaceCreated(name=name, owner_account_id=owner_account_id), ctx,
            tenant_id=self.id,
        )


class App(Aggregate):
    deleted = False

    def apply_AppCreated(self, p: ev.AppCreated) -> None:
        self.state = p.model_dump(exclude={"created_by"})

    def apply_AppUpdated(self, p: ev.AppUpdated) -> None:
        self.state.update(p.model_dump(exclude={"updated_by"}))

    def apply_AppDeleted(self, p: ev.AppDeleted) -> None:
        self.deleted = True

    def ensure_visible_to(self, tenant_id: UUID | None) -> None:
        # Another workspace's app is indistinguishable from a missing one.
        if not self.exists or self.deleted or self.tenant_id != tenant_id:
            raise AppNotFound()

    def create(self, payload: ev.AppCreated, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("App already exists.")
        self.record(payload, ctx)

    def update(self, changes: dict[str, Any], ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        merged = {**self.state, **{k: v for k, v in changes.items() if v is not None}}
        fields = ("name", "description", "icon_type", "icon", "icon_background")
        if all(merged[f] == self.state.get(f) for f in fields):
            return  # nothing changes: no event
        assert ctx.actor_id is not None
        self.record(ev.AppUpdated(**{f: merged[f] for f in fields}, updated_by=ctx.actor_id), ctx)

    def delete(self, ctx: Context) -> None:
        self.ensure_visible_to(ctx.tenant_id)
        assert ctx.actor_id is not None
        self.record(ev.AppDeleted(deleted_by=ctx.actor_id), ctx)


class ApiKey(Aggregate):
    revoked = False

    def apply_ApiKeyCreated(self, p: ev.ApiKeyCreated) -> None:
        self.key_type, self.app_id = p.key_type, p.app_id

    def apply_ApiKeyRevoked(self, p: ev.ApiKeyRevoked) -> None:
        self.revoked = True

    def create(self, payload: ev.ApiKeyCreated, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("API key already exists.")
        self.record(payload, ctx)

    def revoke(self, key_type: str, app_id: UUID | None, ctx: Context) -> None:
        if (
            not self.exists
            or self.revoked
            or self.tenant_id != ctx.tenant_id
            or self.key_type != key_type
            or self.app_id != app_id
        ):
            raise ApiKeyNotFound()
        self.record(ev.ApiKeyRevoked(), ctx)
