"""The outbox transport (MAIL_TYPE=outbox, the embedded default): each mail an .eml file."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from adapters.mail.base import MailServerUnavailable
from adapters.mail.outbox import OutboxMailer
from bootstrap import build_mailer
from config import load_settings
from supervisor import mail_destination
from tests.contracts.mailer import SENDER, Delivered, MailerContract, mail
from workers.mail.processor import failure_category


@pytest.fixture
def mailer(tmp_path: Path) -> OutboxMailer:
    return OutboxMailer(tmp_path / "outbox", SENDER)


@pytest.fixture
def delivered(mailer: OutboxMailer) -> Delivered:
    def read() -> list[EmailMessage]:
        files = sorted(mailer.folder.glob("*.eml")) if mailer.folder.exists() else []
        parsed = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
        return [m for m in parsed if isinstance(m, EmailMessage)]
    return read


class TestOutboxMailer(MailerContract):
    async def test_a_mail_sent_again_is_still_one_file(self, mailer: OutboxMailer,
                                                       delivered: Delivered) -> None:
        await mailer.send(mail(1))
        await mailer.send(mail(1))
        assert [m["Message-ID"] for m in delivered()] == ["<mail.1@eddy.test>"]
        assert [p.name for p in mailer.folder.iterdir()] == ["mail.1@eddy.test.eml"]

    async def test_a_folder_it_cannot_write_is_worth_retrying(self, tmp_path: Path) -> None:
        (tmp_path / "taken").write_text("a file where the outbox folder should be")
        with pytest.raises(MailServerUnavailable) as failed:
            await OutboxMailer(tmp_path / "taken" / "outbox", SENDER).send(mail(1))
        # members are shown the kind of failure, not the server's folder
        assert failure_category(failed.value) == "outbox_unavailable"
        assert str(tmp_path) in str(failed.value)  # the detail: for the log and dead letter


async def test_eddy_up_names_the_folder_mails_are_written_to(tmp_path: Path) -> None:
    settings = load_settings(EDDY_DATA_DIR=tmp_path / "data")
    mailer = build_mailer(settings)
    assert isinstance(mailer, OutboxMailer)
    await mailer.send(mail(1))
    [written] = (tmp_path / "data" / "outbox").iterdir()
    assert mail_destination(settings) == f"mail: written as .eml files to {written.parent}"
    smtp = load_settings(MAIL_TYPE="smtp", SMTP_SERVER="mx.example.com", SMTP_PORT=587)
    assert mail_destination(smtp) == "mail: sent through mx.example.com:587"
