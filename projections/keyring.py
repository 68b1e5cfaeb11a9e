"""A workspace's keyring (adapters/secrets.py `Keyring`) as `workspace_keys` holds it: read
for every seal and unseal (one primary-key range read), so a rotation by `eddy
reset-encrypt-key-pair` counts in every process at once, with no cache to go stale."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.secrets import Keyring, open_key_material
from projections.tables import workspace_keys

ACTIVE, PREVIOUS, RETIRED = "active", "previous", "retired"


async def keyring_of(conn: AsyncConnection, secret_key: str, tenant_id: UUID | None) -> Keyring:
    rows = (await conn.execute(select(workspace_keys).where(
        workspace_keys.c.tenant_id == tenant_id))).mappings().all()
    active = next((r["generation"] for r in rows if r["state"] == ACTIVE), 0)
    return Keyring(
        secret_key, active,
        materials={r["generation"]: open_key_material(secret_key, r["sealed_key"])
                   for r in rows if r["sealed_key"] and r["state"] != RETIRED},
        retired=frozenset(r["generation"] for r in rows if r["state"] == RETIRED))


async def workspace_keyring(engine: AsyncEngine, secret_key: str,
                            tenant_id: UUID | None) -> Keyring:
    async with engine.connect() as conn:
        return await keyring_of(conn, secret_key, tenant_id)
