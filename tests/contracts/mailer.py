"""The mailer contract: what every Mailer must do, as a mixin a transport's test class
combines with its fixtures: `mailer` (sending from SENDER) and `delivered` (the mails that
reached the other end so far, parsed). Subclasses: the outbox folder in
tests/unit/test_mail_outbox.py, SMTP (to the aiosmtpd sink) in
tests/integration/test_smtp_mailer.py.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

from adapters.mail.base import Mailer, MailMessage

SENDER = "Dify <no-reply@eddy.test>"
Delivered = Callable[[], list[EmailMessage]]


def mail(n: int = 1, to: str = "ann@example.com") -> MailMessage:
    return MailMessage(message_id=f"<mail.{n}@eddy.test>", to=to,
                       subject=f"立即加入 Dify 工作空间 {n}",
                       html=f"<p>Dear {to}, <a href=\"http://c/activate?token=t{n}\">join</a></p>",
                       text=f"Dear {to}, join: http://c/activate?token=t{n}\n")


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


class MailerContract:
    async def test_a_mail_arrives_whole(self, mailer: Mailer, delivered: Delivered) -> None:
        await mailer.send(mail(1))
        [received] = delivered()
        assert received["From"] == SENDER
        assert received["To"] == "ann@example.com"
        assert received["Subject"] == "立即加入 Dify 工作空间 1"  # non-ASCII, encoded
        assert received["Message-ID"] == "<mail.1@eddy.test>"
        assert body(received, "plain") == "Dear ann@example.com, join: http://c/activate?token=t1\n"
        assert 'href="http://c/activate?token=t1"' in body(received, "html")

    async def test_each_mail_arrives_to_its_recipient(self, mailer: Mailer,
                                                      delivered: Delivered) -> None:
        await mailer.send(mail(1, "ann@example.com"))
        await mailer.send(mail(2, "bob@example.com"))
        assert sorted((m["To"], m["Message-ID"]) for m in delivered()) == [
            ("ann@example.com", "<mail.1@eddy.test>"), ("bob@example.com", "<mail.2@eddy.test>")]
