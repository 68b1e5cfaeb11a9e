"""The mail aggregate: one mail asked for, and whether it went out.

Other contexts ask for mail by recording `MailRequested` on a new `Mail` in the same unit of
work as their own events (`request_mail`), so the mail exists if and only if what asked for
it happened. The mail processor records `MailSent` before acknowledging the message."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.aggregate import Aggregate, Context
from commands.unit_of_work import UnitOfWork
from schemas.mail import events as ev
from schemas.mail.naming import mail_id_for


class Mail(Aggregate):
    sent: ev.MailSent | None = None
    failure: ev.MailDeliveryFailed | None = None

    def apply_MailRequested(self, p: ev.MailRequested) -> None:
        self.request = p

    def apply_MailSent(self, p: ev.MailSent) -> None:
        self.sent = p

    def apply_MailDeliveryFailed(self, p: ev.MailDeliveryFailed) -> None:
        self.failure = p

    def ask(self, payload: ev.MailRequested, ctx: Context) -> None:
        if not self.exists:  # a redelivered command asks for the mail it asked for
            self.record(payload, ctx)

    def mark_sent(self, message_id: str, transport: str, ctx: Context) -> bool:
        """False: it was sent before (a redelivery or a replay): send nothing."""
        if self.sent is not None:
            return False
        self.record(ev.MailSent(message_id=message_id, transport=transport), ctx)
        return True

    def mark_failed(self, error: str, permanent: bool, ctx: Context) -> None:
        if self.sent is None:
            self.record(ev.MailDeliveryFailed(error=error[:1000], permanent=permanent), ctx)


def request_mail(uow: UnitOfWork, purpose: str, template: ev.MailTemplate, to: str, *,
                 language: str, params: dict[str, Any] | None = None,
                 sealed_params: str | None = None) -> UUID:
    """Ask for a mail in this unit of work; its id (derived from the command and `purpose`).
    Secret params (codes, tokens) arrive sealed by the gateway (`gateway.mail.
    seal_mail_params`): handlers never hold SECRET_KEY."""
    mail_id = mail_id_for(uow.ctx.causation_id, purpose)
    uow.get(Mail, mail_id).ask(ev.MailRequested(
        template=template, to=to, language=language, params=params or {},
        sealed_params=sealed_params), uow.ctx)
    return mail_id
