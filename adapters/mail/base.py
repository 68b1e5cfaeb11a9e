"""Sending a rendered mail: the one thing the mail processor asks of a transport (an SMTP
server, or the outbox folder of `.eml` files). Failures are typed: the processor retries an
unavailable server with backoff and parks a refused mail at once.

Both are `OutsideServiceError`s (adapters/outside.py): a mail server is a service Eddy does
not run, so its outage is never waited out without limit as Postgres or Redis are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from adapters.outside import OutsideServiceError


@dataclass(frozen=True)
class MailMessage:
    """One rendered mail. `message_id` (an RFC 5322 msg-id, `<…@…>`) is derived from the
    mail's id, so a mail sent twice (see README "Mail") carries the same Message-ID."""

    message_id: str
    to: str
    subject: str
    html: str
    text: str


class MailDeliveryError(OutsideServiceError):
    """The transport did not take the mail. The message is the detail (for the log and the
    dead letter: it may quote the server, or name its host and login); `category` is what
    may be shown to members ("smtp_unavailable", "smtp_rejected 550", ...)."""

    def __init__(self, detail: str, category: str) -> None:
        super().__init__(detail)
        self.category = category


class MailServerUnavailable(MailDeliveryError):
    """Worth retrying later: the server could not be reached, dropped the connection, or
    answered 4xx (try again later)."""


class MailRejected(MailDeliveryError):
    """Retrying cannot help: the server refused the mail for good (5xx), or the transport
    is misconfigured (TLS, credentials)."""


class Mailer(Protocol):
    transport: str  # recorded on MailSent: "smtp" | "outbox"

    async def send(self, message: MailMessage) -> None:
        """Hand the mail over; raises MailServerUnavailable or MailRejected."""
        ...
