"""A workspace's keyring (adapters/secrets.py `Keyring`) as `workspace_keys` holds it: read
for every seal and unseal (one primary-key range read), so a rotation by `eddy
reset-encrypt-key-pair` counts in every process at once, with no cache to go stale."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.secrets import (
    Keyring,
    SecretUnreadable,
    new_key_material,
    open_key_material,
    seal_key_material,
)
from projections.tables import workspace_keys

ACTIVE, PREVIOUS, RETIRED = "active", "previous", "retired"


async def keyring_of(conn: AsyncConnection, secret_key: str, tenant_id: UUID | None) -> Keyring:
    rows = (await conn.execute(select(workspace_keys).where(
        workspace_keys.c.tenant_id == tenant_id))).mappings().all()
    active = next((r["generation"] for r in rows if r["state"] == ACTIVE), 0)
    materials = {}
    for row in rows:
        if row["sealed_key"] and row["state"] != RETIRED:
            try:
                materials[row["generation"]] = open_key_material(secret_key, row["sealed_key"])
            except SecretUnreadable:  # sealed under another SECRET_KEY: what it sealed
                continue              # does not open, as any secret sealed under that one
    return Keyring(secret_key, active, materials=materials,
                   retired=frozenset(r["generation"] for r in rows if r["state"] == RETIRED))


async def workspace_keyring(engine: AsyncEngine, secret_key: str,
                            tenant_id: UUID | None) -> Keyring:
    async with engine.connect() as conn:
        return await keyring_of(conn, secret_key, tenant_id)


async def begin_rotation(engine: AsyncEngine, secret_key: str, tenant_id: UUID) -> int:
    """The generation a rotation of this workspace's key seals with: the one an interrupted
    rotation left (while a "previous" key remains, its secrets are not all re-sealed), else
    a new random key, active at once, the one before it kept as "previous" (both open)."""
    async with engine.begin() as conn:
        rows = (await conn.execute(select(workspace_keys).where(
            workspace_keys.c.tenant_id == tenant_id).with_for_update())).mappings().all()
        active = next((r for r in rows if r["state"] == ACTIVE), None)
        if active is not None and any(r["state"] == PREVIOUS for r in rows):
            return int(active["generation"])
        now = datetime.now(UTC)
        if active is None:  # generation 0 (derived from SECRET_KEY) was in use
            await conn.execute(insert(workspace_keys).values(
                tenant_id=tenant_id, generation=0, sealed_key=None, state=PREVIOUS,
                created_at=now))
        else:
            await conn.execute(update(workspace_keys).where(
                workspace_keys.c.tenant_id == tenant_id,
                workspace_keys.c.generation == active["generation"]).values(state=PREVIOUS))
        generation = max((int(r["generation"]) for r in rows), default=0) + 1
        await conn.execute(insert(workspace_keys).values(
            tenant_id=tenant_id, generation=generation, state=ACTIVE, created_at=now,
            sealed_key=seal_key_material(secret_key, new_key_material())))
        return generation


async def retire_previous(engine: AsyncEngine, tenant_id: UUID) -> None:
    """Once every secret of the workspace is sealed with the active key: the old key is
    forgotten, and what it sealed (in old events) no longer opens."""
    async with engine.begin() as conn:
        await conn.execute(update(workspace_keys).where(
            workspace_keys.c.tenant_id == tenant_id, workspace_keys.c.state == PREVIOUS
        ).values(state=RETIRED, sealed_key=None))
