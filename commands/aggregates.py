"""Aggregates: consistency boundaries rebuilt from their events, deciding new ones.

Each aggregate applies its own events (`apply_<EventType>`) and records new ones through
`record`, which applies them at once so later decisions in the same command see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from uuid import UUID, uuid5

from commands.errors import (
    AlreadySetup,
    ApiKeyNotFound,
    AppNotFound,
    BadRequest,
)
from events.envelope import Envelope
from schemas import events as ev

# Namespace for ids derived from natural keys (singletons, emails).
EDDY_NAMESPACE = UUID("5f0c3a4e-6c1b-4d8a-9a57-0e2f1d7b9c11")
SETUP_ID = uuid5(EDDY_NAMESPACE, "setup")


def account_id_for(email: str) -> UUID:
    """One account per e-mail: the id is derived from it, so the store enforces uniqueness."""
    return uuid5(EDDY_NAMESPACE, "account:" + email.strip().lower())


@dataclass(frozen=True)
class Context:
    """Who caused the events being recorded."""

    tenant_id: UUID | None
    actor_id: UUID | None
    correlation_id: UUID
    causation_id: UUID


class Aggregate:
    type_name: ClassVar[str]

    def __init__(self, aggregate_id: UUID) -> None:
        self.id = aggregate_id
        self.version = 0
        self.tenant_id: UUID | None = None
        self.pending: list[Envelope] = []

    @property
    def exists(self) -> bool:
        return self.version > 0

    @classmethod
    def replay(cls, aggregate_id: UUID, events: Sequence[Envelope]) -> Self:
        aggregate = cls(aggregate_id)
        for event in events:
            aggregate._apply(event)
        return aggregate

    def _apply(self, event: Envelope) -> None:
        self.version = event.aggregate_version
        self.tenant_id = event.tenant_id
        getattr(self, f"apply_{event.type}")(event.payload)

    def record(self, payload: ev.EventPayload, ctx: Context, tenant_id: UUID | None = None) -> None:
        event = Envelope.new(
            payload,
            aggregate_type=self.type_name,
            aggregate_id=self.id,
            aggregate_version=self.version + 1,
            tenant_id=tenant_id or self.tenant_id or ctx.tenant_id,
            correlation_id=ctx.correlation_id,
            causation_id=ctx.causation_id,
        )
        self._apply(event)
        self.pending.append(event)


class Setup(Aggregate):
    """The platform's one-time setup; its single version makes a second setup impossible."""

    type_name = "Setup"

    def apply_SetupCompleted(self, payload: dict[str, Any]) -> None:
        pass

    def complete(self, account_id: UUID, workspace_id: UUID, ctx: Context) -> None:
        if self.exists:
            raise AlreadySetup()
        self.record(ev.SetupCompleted(account_id=account_id, workspace_id=workspace_id), ctx)


class Account(Aggregate):
    type_name = "Account"

    def apply_AccountRegistered(self, payload: dict[str, Any]) -> None:
        self.email = payload["email"]

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
    type_name = "Workspace"

    def apply_WorkspaceCreated(self, payload: dict[str, Any]) -> None:
        self.name = payload["name"]

    def create(self, name: str, owner_account_id: UUID, ctx: Context) -> None:
        self.record(
            ev.WorkspaceCreated(name=name, owner_account_id=owner_account_id), ctx,
            tenant_id=self.id,
        )


class App(Aggregate):
    type_name = "App"
    deleted = False
    key_count = 0

    def apply_AppCreated(self, payload: dict[str, Any]) -> None:
        self.state = dict(payload)

    def apply_AppUpdated(self, payload: dict[str, Any]) -> None:
        self.state.update({k: v for k, v in payload.items() if k != "updated_by"})

    def apply_AppDeleted(self, payload: dict[str, Any]) -> None:
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
    type_name = "ApiKey"
    revoked = False

    def apply_ApiKeyCreated(self, payload: dict[str, Any]) -> None:
        self.key_type = payload["key_type"]
        self.app_id = UUID(payload["app_id"]) if payload["app_id"] else None

    def apply_ApiKeyRevoked(self, payload: dict[str, Any]) -> None:
        self.revoked = True

    def create(self, key_type: str, app_id: UUID | None, token: str, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("API key already exists.")
        self.record(ev.ApiKeyCreated(key_type=key_type, app_id=app_id, token=token), ctx)

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
