"""Projectors of the mail context into the console read model: a mail's delivery status."""

from __future__ import annotations

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.envelope import Envelope
from projections.mail.tables import mails
from projections.registry import projectors
from schemas.mail import events as ev


async def project_mail_requested(conn: AsyncConnection,
                                 e: Envelope[ev.MailRequested]) -> None:
    await conn.execute(insert(mails).values(
        id=e.aggregate_id, tenant_id=e.tenant_id, template=e.payload.template,
        recipient=e.payload.to, status="queued", requested_at=e.occurred_at))


async def project_mail_sent(conn: AsyncConnection, e: Envelope[ev.MailSent]) -> None:
    await conn.execute(update(mails).where(mails.c.id == e.aggregate_id).values(
        status="sent", error=None, sent_at=e.occurred_at))


async def project_mail_delivery_failed(conn: AsyncConnection,
                                       e: Envelope[ev.MailDeliveryFailed]) -> None:
    await conn.execute(update(mails).where(mails.c.id == e.aggregate_id).values(
        status="failed", error=e.payload.error))


PROJECTORS = projectors(project_mail_requested, project_mail_sent,
                        project_mail_delivery_failed)
