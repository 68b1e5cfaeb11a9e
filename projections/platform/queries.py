"""Read-side queries of the platform context (plain functions over its read models)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.page import Page
from projections.platform.tables import (
    accounts,
    api_keys,
    apps,
    setup_state,
    workspace_members,
    workspaces,
)
from projections.reads import autocommit
from projections.tables import account_credentials


async def setup_info(engine: AsyncEngine) -> dict[str, Any] | None:
    async with autocommit(engine) as conn:
        row = (await conn.execute(select(setup_state))).mappings().first()
    return dict(row) if row else None


async def _account_with_password(engine: AsyncEngine,
                                 condition: ColumnElement[bool]) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(accounts, account_credentials.c.password_hash)
            .outerjoin(account_credentials, account_credentials.c.id == accounts.c.credentials_id)
            .where(condition)
        )).mappings().first()
    return dict(row) if row else None


async def account_by_email(engine: AsyncEngine, email: str) -> dict[str, Any] | None:
    """The account with its `password_hash` (None if its credentials are missing)."""
    return await _account_with_password(engine, accounts.c.email == email.strip().lower())


async def account_by_id(engine: AsyncEngine, account_id: UUID) -> dict[str, Any] | None:
    """The account with its `password_hash`, as `account_by_email`."""
    return await _account_with_password(engine, accounts.c.id == account_id)


async def account_timezone(engine: AsyncEngine, account_id: UUID) -> str | None:
    """The timezone the account's console shows days in (Dify's `account.timezone`)."""
    async with engine.connect() as conn:
        return await conn.scalar(select(accounts.c.timezone).where(accounts.c.id == account_id))


async def console_identity(engine: AsyncEngine,
                           account_id: UUID) -> tuple[dict[str, Any], UUID, str] | None:
    """The account, the workspace its console works in and its role there, in one query
    (runs on every console request): the workspace it switched to while it is a member
    there, else its oldest membership. None: an account in no workspace (removed from its
    last one), which no console route serves."""
    async with autocommit(engine) as conn:
        row = (await conn.execute(
            select(accounts, workspace_members.c.workspace_id, workspace_members.c.role)
            .join(workspace_members, workspace_members.c.account_id == accounts.c.id)
            .where(accounts.c.id == account_id)
            .order_by((workspace_members.c.workspace_id
                       == func.coalesce(accounts.c.current_workspace_id,
                                        workspace_members.c.workspace_id)).desc(),
                      workspace_members.c.created_at).limit(1)
        )).mappings().first()
    return (dict(row), row["workspace_id"], row["role"]) if row else None


async def account_summaries(engine: AsyncEngine,
                            account_ids: Iterable[UUID]) -> dict[UUID, dict[str, Any]]:
    """Dify's simple account fields (id, name, email) of these accounts, by id."""
    wanted = set(account_ids)
    if not wanted:
        return {}
    async with engine.connect() as conn:
        rows = (await conn.execute(select(accounts.c.id, accounts.c.name, accounts.c.email)
                                   .where(accounts.c.id.in_(wanted)))).mappings().all()
    return {r["id"]: {"id": str(r["id"]), "name": r["name"], "email": r["email"]}
            for r in rows}


async def current_workspace_of(engine: AsyncEngine, account_id: UUID) -> UUID | None:
    async with engine.connect() as conn:
        return (await conn.execute(
            select(workspace_members.c.workspace_id)
            .where(workspace_members.c.account_id == account_id)
            .order_by(workspace_members.c.created_at).limit(1)
        )).scalar()


# --- workspaces and members ------------------------------------------------------------------


async def workspaces_of(engine: AsyncEngine, account_id: UUID) -> list[dict[str, Any]]:
    """The workspaces the account is a member of, with its role there, oldest membership
    first."""
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(workspaces, workspace_members.c.role)
            .join(workspace_members, workspace_members.c.workspace_id == workspaces.c.id)
            .where(workspace_members.c.account_id == account_id)
            .order_by(workspace_members.c.created_at, workspaces.c.id)
        )).mappings().all()
    return [dict(r) for r in rows]


async def workspace_of_member(engine: AsyncEngine, workspace_id: UUID,
                              account_id: UUID) -> dict[str, Any] | None:
    """The workspace with the account's role there; None unless it is a member."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(workspaces, workspace_members.c.role)
            .join(workspace_members, workspace_members.c.workspace_id == workspaces.c.id)
            .where(workspaces.c.id == workspace_id,
                   workspace_members.c.account_id == account_id)
        )).mappings().first()
    return dict(row) if row else None


async def list_members(engine: AsyncEngine, workspace_id: UUID,
                       role: str | None = None) -> list[dict[str, Any]]:
    """The workspace's members (of `role`, if given): their accounts with the role and the
    invitation's mail (`mail_id`), in the order they joined."""
    where = [workspace_members.c.workspace_id == workspace_id]
    if role is not None:
        where.append(workspace_members.c.role == role)
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(accounts.c.id, accounts.c.name, accounts.c.email, accounts.c.status,
                   accounts.c.created_at, workspace_members.c.role,
                   workspace_members.c.invited_by, workspace_members.c.mail_id,
                   workspace_members.c.created_at.label("joined_at"))
            .join(workspace_members, workspace_members.c.account_id == accounts.c.id)
            .where(*where).order_by(workspace_members.c.created_at, accounts.c.id)
        )).mappings().all()
    return [dict(r) for r in rows]


async def pending_member(engine: AsyncEngine, workspace_id: UUID,
                         account_id: UUID) -> dict[str, Any] | None:
    """An invited account that has not activated yet, a member of the workspace: its
    e-mail and the workspace's name (what an activation link may still open)."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(accounts.c.email, workspaces.c.name.label("workspace_name"))
            .join(workspace_members, workspace_members.c.account_id == accounts.c.id)
            .join(workspaces, workspaces.c.id == workspace_members.c.workspace_id)
            .where(accounts.c.id == account_id, accounts.c.status == "pending",
                   workspaces.c.id == workspace_id, workspaces.c.status == "normal")
        )).mappings().first()
    return dict(row) if row else None


# Built once (with its cache key): it runs on most console app requests.
_APP_IN_WORKSPACE = (
    select(apps, accounts.c.name.label("author_name"))
    .join(accounts, accounts.c.id == apps.c.created_by, isouter=True)
    .where(apps.c.id == bindparam("app_id"), apps.c.tenant_id == bindparam("tenant_id")))


async def app_in_workspace(engine: AsyncEngine, tenant_id: UUID,
                           app_id: UUID) -> dict[str, Any] | None:
    async with autocommit(engine) as conn:
        row = (await conn.execute(_APP_IN_WORKSPACE, {
            "app_id": app_id, "tenant_id": tenant_id})).mappings().first()
    return dict(row) if row else None


async def list_apps(engine: AsyncEngine, tenant_id: UUID, *, page: int, limit: int,
                    mode: str | None, name: str | None) -> Page:
    where = [apps.c.tenant_id == tenant_id]
    if mode:
        where.append(apps.c.mode == mode)
    if name:
        where.append(apps.c.name.ilike(f"%{name}%"))
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(apps).where(*where)))
        rows = (await conn.execute(
            select(apps, accounts.c.name.label("author_name"))
            .join(accounts, accounts.c.id == apps.c.created_by, isouter=True)
            .where(*where).order_by(apps.c.created_at.desc(), apps.c.id)
            .offset((page - 1) * limit).limit(limit)
        )).mappings().all()
        return Page(items=[dict(r) for r in rows], total=int(total.scalar() or 0))


async def list_api_keys(engine: AsyncEngine, tenant_id: UUID, key_type: str,
                        app_id: UUID | None) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(api_keys).where(
                api_keys.c.tenant_id == tenant_id, api_keys.c.type == key_type,
                api_keys.c.app_id == app_id if app_id else api_keys.c.app_id.is_(None),
            ).order_by(api_keys.c.created_at)
        )).mappings().all()
    return [dict(r) for r in rows]


async def api_key_by_token_hash(engine: AsyncEngine, token_hash: str) -> dict[str, Any] | None:
    """The key whose token has this sha256 (the read model never holds the token), and its
    workspace owner (Service API calls act as the owner, as in Dify)."""
    owner = (select(workspace_members.c.account_id)
             .where(workspace_members.c.workspace_id == api_keys.c.tenant_id,
                    workspace_members.c.role == "owner").limit(1).scalar_subquery())
    async with autocommit(engine) as conn:
        row = (await conn.execute(
            select(api_keys, owner.label("owner_id"))
            .where(api_keys.c.token_hash == token_hash)
        )).mappings().first()
    return dict(row) if row else None


async def all_app_ids(engine: AsyncEngine) -> list[UUID]:
    """Every workspace's apps, oldest first (`eddy vdb-migrate`)."""
    async with engine.connect() as conn:
        return list((await conn.execute(select(apps.c.id).order_by(
            apps.c.created_at, apps.c.id))).scalars())
