"""MAIL_TYPE=smtp: each mail handed to an SMTP server, with Dify's settings and meanings:
SMTP_USE_TLS without SMTP_OPPORTUNISTIC_TLS is implicit TLS (SMTPS, usually port 465), with
it STARTTLS on a plain connection (usually 587); login only when both SMTP_USERNAME and
SMTP_PASSWORD are set.

Failures are classified for the processor: unreachable, dropped or 4xx (the server asks to
try later) → MailServerUnavailable; 5xx, a TLS or login failure → MailRejected."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass

from adapters.mail.base import MailMessage, MailRejected, MailServerUnavailable
from adapters.mail.mime import mime_message

SMTP_TIMEOUT_SECONDS = 10.0  # connect and each reply (Dify's)


@dataclass(frozen=True)
class SmtpSettings:
    server: str
    port: int
    username: str = ""
    password: str = ""
    use_tls: bool = False
    opportunistic_tls: bool = False
    sender: str = ""


class SmtpMailer:
    transport = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, message: MailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.use_tls and not s.opportunistic_tls:
            return smtplib.SMTP_SSL(s.server, s.port, timeout=SMTP_TIMEOUT_SECONDS,
                                    context=ssl.create_default_context())
        client = smtplib.SMTP(s.server, s.port, timeout=SMTP_TIMEOUT_SECONDS)
        if s.use_tls:
            client.starttls(context=ssl.create_default_context())
        return client

    def _send(self, message: MailMessage) -> None:
        mime = mime_message(message, self.settings.sender)
        try:
            with self._connect() as client:
                if self.settings.username and self.settings.password:
                    client.login(self.settings.username, self.settings.password)
                client.send_message(mime)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise _by_code(min(codes), f"recipient refused: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, auth …
            raise _by_code(exc.smtp_code, f"{exc.smtp_code} {exc.smtp_error!r}") from exc
        except (smtplib.SMTPNotSupportedError, ssl.SSLError, ssl.CertificateError) as exc:
            raise MailRejected(f"SMTP {self.settings.server}:{self.settings.port}: "
                               f"{exc!r}", "smtp_misconfigured") from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, dropped
            raise MailServerUnavailable(f"SMTP {self.settings.server}:{self.settings.port}: "
                                        f"{exc!r}", "smtp_unavailable") from exc


def _by_code(code: int, detail: str) -> MailServerUnavailable | MailRejected:
    """4xx: a transient condition (mailbox busy, greylisting, server shutting down). The
    category holds the code only: the server's words may echo the login or the address."""
    if 400 <= code < 500:
        return MailServerUnavailable(f"SMTP {detail}", f"smtp_unavailable {code}")
    return MailRejected(f"SMTP {detail}", f"smtp_rejected {code}")
