"""Projectors of the platform context into the console read model: setup, accounts,
workspaces, apps, API keys.

Each runs inside the transaction that also advances the projection's tracking, so applying
an event is all-or-nothing and a redelivered event is skipped before reaching here.

Events of different aggregates are applied in any relative order (partitions are consumed
concurrently), so a projector that removes other aggregates' rows leaves a tombstone, and
one that adds a row under another aggregate checks it: the read model is the same whatever
the interleaving. `lock`, `bury` and `buried` are that protocol, for every context.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.platform.tables import (
    accounts,
    api_keys,
    apps,
    custom_models,
    default_models,
    provider_credentials,
    setup_state,
    tombstones,
    workspace_members,
    workspaces,
)
from projections.registry import projectors
from schemas.platform import events as ev

_INSERT_APP = insert(apps)
_UPDATE_APP = update(apps).where(apps.c.id == bindparam("app_id"))

# --- tombstones (used by every context's projectors) -----------------------------------------

_LOCK_SPACE = 0x45646479  # "Eddy": the first key of the projectors' two-key advisory locks


async def lock(conn: AsyncConnection, aggregate_id: UUID, *, exclusive: bool = False) -> None:
    """Until commit, on Postgres: a deletion takes its aggregate's lock exclusively, projectors
    adding rows under that aggregate take it shared. Otherwise a child inserted concurrently
    with its parent's deletion (other partitions, other transactions) could miss the
    tombstone while the deletion misses the uncommitted child. The next statement, in a
    fresh snapshot (READ COMMITTED), sees what the other committed. Parents are locked
    before children. SQLite runs one writer at a time: nothing to do."""
    if conn.dialect.name != "postgresql":
        return
    key = int.from_bytes(aggregate_id.bytes[:4], "big", signed=True)  # a clash only waits
    take = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    await conn.execute(select(take(_LOCK_SPACE, key)))


async def bury(conn: AsyncConnection, deleted_id: UUID, kind: str, at: datetime) -> None:
    """Records a deletion (the rows under it are gone, and must stay gone)."""
    if not await buried(conn, [deleted_id]):
        await conn.execute(insert(tombstones), {"id": deleted_id, "kind": kind, "deleted_at": at})


# The ids as a bound parameter: compiled once, not coerced and cache-keyed on every call.
# One id (most calls) without an expanding list, whose SQL is rewritten per execution.
_BURIED = select(tombstones.c.id).where(tombstones.c.id.in_(bindparam("ids", expanding=True)))
_BURIED_ONE = select(tombstones.c.id).where(tombstones.c.id == bindparam("id"))


async def buried(conn: AsyncConnection, ids: Iterable[UUID]) -> set[UUID]:
    """Which of these ids were deleted."""
    wanted = list(set(ids))
    if not wanted:
        return set()
    if len(wanted) == 1:
        found = await conn.execute(_BURIED_ONE, {"id": wanted[0]})
    else:
        found = await conn.execute(_BURIED, {"ids": wanted})
    return set(found.scalars())


# --- setup, accounts, workspaces, apps, API keys ---------------------------------------------


async def project_setup_completed(conn: AsyncConnection, e: Envelope[ev.SetupCompleted]) -> None:
    await conn.execute(insert(setup_state).values(
        id=1, account_id=e.payload.account_id,
        workspace_id=e.payload.workspace_id, setup_at=e.occurred_at,
    ))


async def project_account_registered(conn: AsyncConnection,
                                     e: Envelope[ev.AccountRegistered]) -> None:
    p = e.payload
    await conn.execute(insert(accounts), {
        "id": e.aggregate_id, "email": p.email.lower(), "name": p.name,
        "credentials_id": p.credentials_id, "interface_language": p.interface_language,
        "timezone": p.timezone, "status": "active", "created_at": e.occurred_at,
    })


async def project_workspace_created(conn: AsyncConnection,
                                    e: Envelope[ev.WorkspaceCreated]) -> None:
    await conn.execute(insert(workspaces), {
        "id": e.aggregate_id, "name": e.payload.name, "status": "normal",
        "created_at": e.occurred_at,
    })
    await conn.execute(insert(workspace_members), {
        "workspace_id": e.aggregate_id, "account_id": e.payload.owner_account_id,
        "role": "owner", "created_at": e.occurred_at,
    })


async def project_pending_account_created(conn: AsyncConnection,
                                         e: Envelope[ev.PendingAccountCreated]) -> None:
    p = e.payload
    await conn.execute(insert(accounts), {
        "id": e.aggregate_id, "email": p.email.lower(), "name": p.name, "credentials_id": None,
        "interface_language": p.interface_language, "timezone": "UTC", "status": "pending",
        "created_at": e.occurred_at,
    })


async def project_account_activated(conn: AsyncConnection,
                                    e: Envelope[ev.AccountActivated]) -> None:
    p = e.payload
    changes: dict[str, Any] = {"name": p.name, "interface_language": p.interface_language,
                               "timezone": p.timezone, "status": "active"}
    if p.credentials_id is not None:
        changes["credentials_id"] = p.credentials_id
    await conn.execute(update(accounts).where(accounts.c.id == e.aggregate_id).values(changes))


async def project_account_password_changed(conn: AsyncConnection,
                                           e: Envelope[ev.AccountPasswordChanged]) -> None:
    await conn.execute(update(accounts).where(accounts.c.id == e.aggregate_id).values(
        credentials_id=e.payload.credentials_id))


async def project_account_email_changed(conn: AsyncConnection,
                                        e: Envelope[ev.AccountEmailChanged]) -> None:
    await conn.execute(update(accounts).where(accounts.c.id == e.aggregate_id).values(
        email=e.payload.email.lower()))


async def project_current_workspace_switched(
        conn: AsyncConnection, e: Envelope[ev.CurrentWorkspaceSwitched]) -> None:
    # On the account, not the membership row: the membership's event (another aggregate's)
    # may be applied after this one.
    await conn.execute(update(accounts).where(accounts.c.id == e.aggregate_id).values(
        current_workspace_id=e.payload.workspace_id))


async def project_member_invited(conn: AsyncConnection, e: Envelope[ev.MemberInvited]) -> None:
    p = e.payload
    await conn.execute(insert(workspace_members), {
        "workspace_id": e.aggregate_id, "account_id": p.account_id, "role": p.role,
        "created_at": e.occurred_at, "invited_by": p.invited_by, "mail_id": p.mail_id,
    })


async def project_member_role_updated(conn: AsyncConnection,
                                      e: Envelope[ev.MemberRoleUpdated]) -> None:
    await conn.execute(update(workspace_members).where(
        workspace_members.c.workspace_id == e.aggregate_id,
        workspace_members.c.account_id == e.payload.account_id).values(role=e.payload.role))


async def project_member_removed(conn: AsyncConnection, e: Envelope[ev.MemberRemoved]) -> None:
    await conn.execute(delete(workspace_members).where(
        workspace_members.c.workspace_id == e.aggregate_id,
        workspace_members.c.account_id == e.payload.account_id))


async def project_app_created(conn: AsyncConnection, e: Envelope[ev.AppCreated]) -> None:
    await project_apps_created(conn, [e])


async def project_apps_created(conn: AsyncConnection,
                               run: Sequence[Envelope[ev.AppCreated]]) -> None:
    """Consecutive app creations in one statement: each app is its own aggregate, and a
    creation checks nothing another one changes."""
    await conn.execute(_INSERT_APP, [{
        "id": e.aggregate_id, "tenant_id": e.tenant_id, "name": e.payload.name,
        "mode": e.payload.mode, "description": e.payload.description,
        "icon_type": e.payload.icon_type, "icon": e.payload.icon,
        "icon_background": e.payload.icon_background, "created_by": e.payload.created_by,
        "created_at": e.occurred_at, "updated_by": e.payload.created_by,
        "updated_at": e.occurred_at,
    } for e in run])


async def project_app_updated(conn: AsyncConnection, e: Envelope[ev.AppUpdated]) -> None:
    await project_apps_updated(conn, [e])


async def project_apps_updated(conn: AsyncConnection,
                               run: Sequence[Envelope[ev.AppUpdated]]) -> None:
    """Consecutive app updates in one statement, applied in their order (one app's updates
    too: the last one's values stay)."""
    await conn.execute(_UPDATE_APP, [{
        "app_id": e.aggregate_id, "name": e.payload.name,
        "description": e.payload.description, "icon_type": e.payload.icon_type,
        "icon": e.payload.icon, "icon_background": e.payload.icon_background,
        "updated_by": e.payload.updated_by, "updated_at": e.occurred_at,
    } for e in run])


async def project_app_deleted(conn: AsyncConnection, e: Envelope[ev.AppDeleted]) -> None:
    await lock(conn, e.aggregate_id, exclusive=True)
    await bury(conn, e.aggregate_id, e.aggregate_type, e.occurred_at)
    await conn.execute(delete(apps).where(apps.c.id == e.aggregate_id))
    # An app's keys die with it (Dify deletes them in the same request).
    await conn.execute(delete(api_keys).where(api_keys.c.app_id == e.aggregate_id))


async def project_api_key_created(conn: AsyncConnection, e: Envelope[ev.ApiKeyCreated]) -> None:
    p = e.payload
    if p.app_id is not None:
        await lock(conn, p.app_id)
        if await buried(conn, [p.app_id]):
            return  # applied after its app's deletion (another partition): gone with it
    await conn.execute(insert(api_keys), {
        "id": e.aggregate_id, "tenant_id": e.tenant_id, "type": p.key_type,
        "app_id": p.app_id, "token_hash": p.token_hash, "token_ciphertext": p.token_ciphertext,
        "token_hint": p.token_hint, "created_at": e.occurred_at,
    })


async def project_api_key_token_resealed(conn: AsyncConnection,
                                        e: Envelope[ev.ApiKeyTokenResealed]) -> None:
    await conn.execute(update(api_keys).where(api_keys.c.id == e.aggregate_id).values(
        token_ciphertext=e.payload.token_ciphertext))


async def project_api_key_revoked(conn: AsyncConnection, e: Envelope[ev.ApiKeyRevoked]) -> None:
    await conn.execute(delete(api_keys).where(api_keys.c.id == e.aggregate_id))


# --- model providers -------------------------------------------------------------------------


async def project_provider_credentials_saved(conn: AsyncConnection,
                                             e: Envelope[ev.ProviderCredentialsSaved]) -> None:
    p = e.payload
    key = (provider_credentials.c.tenant_id == e.aggregate_id,
           provider_credentials.c.provider == p.provider)
    await conn.execute(delete(provider_credentials).where(*key))
    await conn.execute(insert(provider_credentials).values(
        tenant_id=e.aggregate_id, provider=p.provider,
        credentials_ciphertext=p.credentials_ciphertext,
        credentials_masked=p.credentials_masked, updated_at=e.occurred_at))


async def project_provider_credentials_deleted(
        conn: AsyncConnection, e: Envelope[ev.ProviderCredentialsDeleted]) -> None:
    await conn.execute(delete(provider_credentials).where(
        provider_credentials.c.tenant_id == e.aggregate_id,
        provider_credentials.c.provider == e.payload.provider))


async def project_provider_credentials_resealed(
        conn: AsyncConnection, e: Envelope[ev.ProviderCredentialsResealed]) -> None:
    p = e.payload
    if p.model is None:
        await conn.execute(update(provider_credentials).where(
            provider_credentials.c.tenant_id == e.aggregate_id,
            provider_credentials.c.provider == p.provider).values(
            credentials_ciphertext=p.credentials_ciphertext))
    else:
        await conn.execute(update(custom_models).where(*_custom_model_key(
            e.aggregate_id, p.provider, p.model, p.model_type or "")).values(
            credentials_ciphertext=p.credentials_ciphertext))


def _custom_model_key(tenant_id: UUID, provider: str, model: str, model_type: str) -> tuple[
        Any, ...]:
    return (custom_models.c.tenant_id == tenant_id, custom_models.c.provider == provider,
            custom_models.c.model == model, custom_models.c.model_type == model_type)


async def project_custom_model_saved(conn: AsyncConnection,
                                     e: Envelope[ev.CustomModelSaved]) -> None:
    p = e.payload
    key = _custom_model_key(e.aggregate_id, p.provider, p.model, p.model_type)
    created = (await conn.execute(select(custom_models.c.created_at).where(*key))).scalar()
    await conn.execute(delete(custom_models).where(*key))
    await conn.execute(insert(custom_models).values(
        tenant_id=e.aggregate_id, provider=p.provider, model=p.model, model_type=p.model_type,
        credentials_ciphertext=p.credentials_ciphertext,
        credentials_masked=p.credentials_masked, created_at=created or e.occurred_at,
        updated_at=e.occurred_at))


async def project_custom_model_deleted(conn: AsyncConnection,
                                       e: Envelope[ev.CustomModelDeleted]) -> None:
    p = e.payload
    await conn.execute(delete(custom_models).where(
        *_custom_model_key(e.aggregate_id, p.provider, p.model, p.model_type)))


async def project_default_model_set(conn: AsyncConnection,
                                    e: Envelope[ev.DefaultModelSet]) -> None:
    p = e.payload
    await conn.execute(delete(default_models).where(
        default_models.c.tenant_id == e.aggregate_id,
        default_models.c.model_type == p.model_type))
    await conn.execute(insert(default_models).values(
        tenant_id=e.aggregate_id, model_type=p.model_type, provider=p.provider,
        model=p.model, updated_at=e.occurred_at))


PROJECTORS = projectors(
    project_setup_completed, project_account_registered, project_workspace_created,
    project_pending_account_created, project_account_activated,
    project_account_password_changed, project_account_email_changed,
    project_current_workspace_switched,
    project_member_invited, project_member_role_updated, project_member_removed,
    project_app_created, project_app_updated, project_app_deleted, project_api_key_created,
    project_api_key_revoked, project_provider_credentials_saved,
    project_provider_credentials_deleted, project_custom_model_saved,
    project_custom_model_deleted, project_default_model_set,
    project_provider_credentials_resealed, project_api_key_token_resealed,
    # The console shows no request for a code (its mail shows in the mail context), and an
    # EmailClaim's address shows as its account's own AccountEmailChanged.
    ignore=[ev.PasswordResetRequested, ev.EmailCodeLoginRequested, ev.EmailClaimed],
    runs=[project_apps_created, project_apps_updated],
)
