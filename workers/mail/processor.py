"""The mail processor: the consumer group of `mail.outbox` (MailRequested), sending each mail
once.

For each mail: load it; sent already (a redelivery, a replay) → nothing. Else render it
(opening its sealed params), hand it to the mailer under a Message-ID derived from the
mail's id, and record MailSent before the message is acknowledged. The one window left: a
worker killed after the server took the mail and before MailSent is recorded sends it
again on redelivery, with the same Message-ID (README, "Mail").

Failures: a server down or answering 4xx is retried with backoff, MAIL_SEND_MAX_ATTEMPTS
times in all (the processor's own RetryPolicy), then the mail is dead-lettered; a refusal
(5xx) or a mail that cannot be rendered is dead-lettered at once. Either way
MailDeliveryFailed is recorded; `eddy dlq replay` sends it after all (MailSent then).

Fault hook for tests: EDDY_FAULT_MAIL_PAUSE_SECONDS=<s> makes the processor wait that long
after recording MailSent, before the message is acknowledged (the test kills it then).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from functools import partial
from typing import Any
from uuid import UUID

import jinja2
import orjson

from adapters.bus.base import Message
from adapters.mail.base import MailDeliveryError, Mailer, MailMessage, MailRejected
from adapters.secrets import SecretUnreadable, unseal
from commands.aggregate import Context
from commands.mail.aggregates import Mail
from commands.unit_of_work import UnitOfWork
from config import Settings
from events.envelope import Envelope
from events.registry import EventTypes
from events.store import ConcurrencyConflict, EventStore
from schemas.mail import events as ev
from schemas.mail.naming import MAIL_PARAMS_PURPOSE
from workers.knowledge.indexing import caused_by
from workers.mail.rendering import render_mail
from workers.runtime import PermanentFailure, Processor, RetryPolicy, by_type, decoding

log = logging.getLogger(__name__)

PAUSE_AFTER_SENT_ENV = "EDDY_FAULT_MAIL_PAUSE_SECONDS"
MAX_BACKOFF_SECONDS = 60.0
MAX_RECORD_CONFLICTS = 20


@dataclass(frozen=True)
class MailDeps:
    store: EventStore
    mailer: Mailer
    secret_key: str
    sender: str


def outbox_processor(topic: str, *, event_types: EventTypes, store: EventStore,
                     mailer: Mailer, settings: Settings) -> Processor:
    deps = MailDeps(store=store, mailer=mailer, secret_key=settings.SECRET_KEY,
                    sender=settings.MAIL_DEFAULT_SEND_FROM)

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        event = event_types.envelope_from_json(message.value)
        await asyncio.to_thread(record_failure, store, event.aggregate_id, caused_by(event),
                                failure_category(exc), isinstance(exc, PermanentFailure))

    return Processor(
        group=topic, topics=[topic], on_dead_letter=on_dead_letter, side_effects=True,
        retry=RetryPolicy(max_attempts=settings.MAIL_SEND_MAX_ATTEMPTS,
                          base_backoff=settings.MAIL_RETRY_BACKOFF_SECONDS,
                          max_backoff=max(MAX_BACKOFF_SECONDS,
                                          settings.MAIL_RETRY_BACKOFF_SECONDS)),
        handle=decoding(event_types, by_type({ev.MailRequested: partial(send_mail, deps)})))


class MailUnrenderable(PermanentFailure):
    """A mail that cannot be rendered, and never will be."""


def failure_category(exc: BaseException) -> str:
    """What MailDeliveryFailed records of a failure, shown to every member of the workspace:
    its kind ("smtp_unavailable", "smtp_rejected 550", "render_failed"), never the detail
    (the server's reply, its address, the login), which stays in the log line and the dead
    letter."""
    for cause in (exc, exc.__cause__):
        if isinstance(cause, MailDeliveryError):
            return cause.category
    return "render_failed" if isinstance(exc, MailUnrenderable) else "delivery_failed"


def message_id_for(mail_id: UUID, sender: str) -> str:
    """The mail's Message-ID, the same however often it is sent (the sender's domain on
    the right, as mail servers expect)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "eddy.local"
    return f"<mail.{mail_id}@{domain}>"


async def send_mail(deps: MailDeps, event: Envelope[ev.MailRequested]) -> None:
    mail_id = event.aggregate_id
    mail = await asyncio.to_thread(UnitOfWork(deps.store, caused_by(event)).get, Mail, mail_id)
    if mail.sent is not None:
        return  # sent before: a redelivery or a replay sends nothing
    message = _rendered(deps, mail_id, event.payload)
    try:
        await deps.mailer.send(message)
    except MailRejected as exc:
        raise PermanentFailure(str(exc)) from exc
    await asyncio.to_thread(record_sent, deps.store, mail_id, caused_by(event),
                            message.message_id, deps.mailer.transport)
    log.info("mail sent", extra={"mail_id": str(mail_id), "template": event.payload.template,
                                 "transport": deps.mailer.transport})
    pause = float(os.environ.get(PAUSE_AFTER_SENT_ENV, "0"))
    if pause > 0:  # fault tests: the window between recording and acknowledging
        await asyncio.sleep(pause)


def _rendered(deps: MailDeps, mail_id: UUID, p: ev.MailRequested) -> MailMessage:
    """The mail to send; one that cannot be rendered (a param missing, sealed params that
    do not open under this SECRET_KEY) never will be: dead-lettered at once."""
    try:
        params: dict[str, Any] = {**p.params, **_opened(deps.secret_key, p.sealed_params)}
        rendered = render_mail(p.template, p.language, p.to, params)
    except (jinja2.TemplateError, SecretUnreadable) as exc:
        raise MailUnrenderable(f"mail {p.template} cannot be rendered: {exc!r}") from exc
    return MailMessage(message_id=message_id_for(mail_id, deps.sender), to=p.to,
                       subject=rendered.subject, html=rendered.html, text=rendered.text)


def _opened(secret_key: str, sealed: str | None) -> dict[str, Any]:
    if sealed is None:
        return {}
    opened = orjson.loads(unseal(secret_key, MAIL_PARAMS_PURPOSE, sealed))
    assert isinstance(opened, dict)
    return opened


def record_sent(store: EventStore, mail_id: UUID, ctx: Context, message_id: str,
                transport: str) -> None:
    _record(store, mail_id, ctx, lambda mail: mail.mark_sent(message_id, transport, ctx))


def record_failure(store: EventStore, mail_id: UUID, ctx: Context, error: str,
                   permanent: bool) -> None:
    _record(store, mail_id, ctx, lambda mail: mail.mark_failed(error, permanent, ctx))


def _record(store: EventStore, mail_id: UUID, ctx: Context,
            decide: Callable[[Mail], object]) -> None:
    for _ in range(MAX_RECORD_CONFLICTS):
        uow = UnitOfWork(store, ctx)
        decide(uow.get(Mail, mail_id))
        try:
            uow.commit()
            return
        except ConcurrencyConflict:
            continue  # recorded meanwhile (a stale member, a dead letter's hook): decide again
    raise ConcurrencyConflict(f"mail {mail_id} kept conflicting")
