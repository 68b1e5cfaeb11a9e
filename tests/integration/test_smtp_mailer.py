"""The SMTP transport against a real SMTP server (the aiosmtpd sink): the mailer contract,
and how the server's answers are classified for the mail processor."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from adapters.mail.base import MailRejected, MailServerUnavailable
from adapters.mail.smtp import SmtpMailer, SmtpSettings
from tests.contracts.mailer import SENDER, Delivered, MailerContract, mail
from tests.smtp_sink import SmtpSink


def smtp_mailer(sink: SmtpSink, **options: object) -> SmtpMailer:
    return SmtpMailer(SmtpSettings(server=sink.host, port=sink.port, sender=SENDER,
                                   **options))  # type: ignore[arg-type]


@pytest.fixture
def mailer(smtp_sink: SmtpSink) -> SmtpMailer:
    return smtp_mailer(smtp_sink)


@pytest.fixture
def delivered(smtp_sink: SmtpSink) -> Delivered:
    def read() -> list[EmailMessage]:
        return [m.message for m in smtp_sink.received()]
    return read


class TestSmtpMailer(MailerContract):
    async def test_the_envelope_is_from_the_sender_to_the_recipient(
            self, mailer: SmtpMailer, smtp_sink: SmtpSink) -> None:
        await mailer.send(mail(1, "bob@example.com"))
        [received] = smtp_sink.received()
        assert (received.sender, received.recipients) == ("no-reply@eddy.test",
                                                          ["bob@example.com"])

    async def test_a_server_that_is_down_is_worth_retrying(self, mailer: SmtpMailer,
                                                           smtp_sink: SmtpSink) -> None:
        smtp_sink.stop()
        with pytest.raises(MailServerUnavailable, match="Connection refused") as failed:
            await mailer.send(mail(1))
        assert failed.value.category == "smtp_unavailable"

    async def test_try_again_later_is_worth_retrying(self, mailer: SmtpMailer,
                                                     smtp_sink: SmtpSink) -> None:
        smtp_sink.refuse(451)
        with pytest.raises(MailServerUnavailable, match="451") as failed:
            await mailer.send(mail(1))
        assert failed.value.category == "smtp_unavailable 451"
        smtp_sink.refuse(None)
        await mailer.send(mail(1))
        assert len(smtp_sink.received()) == 1

    async def test_a_refusal_is_for_good(self, mailer: SmtpMailer,
                                         smtp_sink: SmtpSink) -> None:
        smtp_sink.refuse(550)
        with pytest.raises(MailRejected, match="550") as failed:
            await mailer.send(mail(1))
        assert failed.value.category == "smtp_rejected 550"  # the code, not the reply
        assert smtp_sink.received() == []

    async def test_starttls_a_server_does_not_offer_is_a_configuration_error(
            self, smtp_sink: SmtpSink) -> None:
        mailer = smtp_mailer(smtp_sink, use_tls=True, opportunistic_tls=True)
        with pytest.raises(MailRejected, match="STARTTLS") as failed:
            await mailer.send(mail(1))
        assert failed.value.category == "smtp_misconfigured"
        assert smtp_sink.received() == []
