"""Projectors of the platform context into the console read model: setup, accounts,
workspaces, apps, API keys.

Each runs inside the transaction that also advances the projection's tracking, so applying
an event is all-or-nothing and a redelivered event is skipped before reaching here.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.platform.tables import (
    accounts,
    api_keys,
    apps,
    setup_state,
    workspace_members,
    workspaces,
)
from projections.registry import projectors
from schemas.platform import events as ev


async def project_setup_completed(conn: AsyncConnection, e: Envelope[ev.SetupCompleted]) -> None:
    await conn.execute(insert(setup_state).values(
        id=1, account_id=e.payload.account_id,
        workspace_id=e.payload.workspace_id, setup_at=e.occurred_at,
    ))


async def project_account_registered(conn: AsyncConnection,
                                     e: Envelope[ev.AccountRegistered]) -> None:
    p = e.payload
    await conn.execute(insert(accounts).values(
        id=e.aggregate_id, email=p.email.lower(), name=p.name,
        password_hash=p.password_hash, interface_language=p.interface_language,
        timezone=p.timezone, status="active", created_at=e.occurred_at,
    ))


async def project_workspace_created(conn: AsyncConnection,
                                    e: Envelope[ev.WorkspaceCreated]) -> None:
    await conn.execute(insert(workspaces).values(
        id=e.aggregate_id, name=e.payload.name, status="normal", created_at=e.occurred_at,
    ))
    await conn.execute(insert(workspace_members).values(
        workspace_id=e.aggregate_id, account_id=e.payload.owner_account_id,
        role="owner", created_at=e.occurred_at,
    ))


async def project_app_created(conn: AsyncConnection, e: Envelope[ev.AppCreated]) -> None:
    p = e.payload
    await conn.execute(insert(apps).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, name=p.name, mode=p.mode,
        description=p.description, icon_type=p.icon_type, icon=p.icon,
        icon_background=p.icon_background, created_by=p.created_by,
        created_at=e.occurred_at, updated_by=p.created_by, updated_at=e.occurred_at,
    ))


async def project_app_updated(conn: AsyncConnection, e: Envelope[ev.AppUpdated]) -> None:
    p = e.payload
    await conn.execute(update(apps).where(apps.c.id == e.aggregate_id).values(
        name=p.name, description=p.description, icon_type=p.icon_type, icon=p.icon,
        icon_background=p.icon_background, updated_by=p.updated_by,
        updated_at=e.occurred_at,
    ))


async def project_app_deleted(conn: AsyncConnection, e: Envelope[ev.AppDeleted]) -> None:
    await conn.execute(delete(apps).where(apps.c.id == e.aggregate_id))
    # An app's keys die with it (Dify deletes them in the same request).
    await conn.execute(delete(api_keys).where(api_keys.c.app_id == e.aggregate_id))


async def project_api_key_created(conn: AsyncConnection, e: Envelope[ev.ApiKeyCreated]) -> None:
    p = e.payload
    await conn.execute(insert(api_keys).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, type=p.key_type,
        app_id=p.app_id, token_hash=p.token_hash, token_ciphertext=p.token_ciphertext,
        token_hint=p.token_hint, created_at=e.occurred_at,
    ))


async def project_api_key_revoked(conn: AsyncConnection, e: Envelope[ev.ApiKeyRevoked]) -> None:
    await conn.execute(delete(api_keys).where(api_keys.c.id == e.aggregate_id))


PROJECTORS = projectors(
    project_setup_completed, project_account_registered, project_workspace_created,
    project_app_created, project_app_updated, project_app_deleted, project_api_key_created,
    project_api_key_revoked,
)
