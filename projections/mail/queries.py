"""Reads of the mail read model: how the mails other read models name are doing (the
members list shows each invitation's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.mail.tables import mails


async def mail_status_of(engine: AsyncEngine, ids: Iterable[UUID | None],
                         ) -> dict[UUID, dict[str, Any]]:
    """mail id -> {status, error, requested_at, sent_at}; ids of no known mail are left out."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(mails.c.id, mails.c.status, mails.c.error, mails.c.requested_at,
                   mails.c.sent_at).where(mails.c.id.in_(wanted)))
        return {r.id: {"status": r.status, "error": r.error, "requested_at": r.requested_at,
                       "sent_at": r.sent_at} for r in rows}

