"""Mail sent by the mail processor (the `mail.outbox` consumer group) to a real SMTP server
(the aiosmtpd sink): each mail once, whatever happens between sending and acknowledging;
a server that stays down ends in the dead letters and on the mail's status, and
`eddy dlq replay` sends it once it is back.

Each mail is an invitation (POST …/members/invite-email): its link, holding the activation
token, travels sealed from the gateway to the mail processor."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from config import Settings
from contexts.mail import OUTBOX
from projections.mail.queries import mail_status_of
from schemas.mail.events import MailRequested
from tests.harness import Node, eventually, everything_recorded, node_settings, running_node
from tests.integration.conftest import operator_env
from tests.integration.test_cli_operations import eddy, json_lines
from tests.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
OUTBOX_ROLE = f"mail.{OUTBOX.role}"
WRITES = ["relay", "commands", "projections"]  # and the mail processor, where a test says


@dataclass(frozen=True)
class Invitation:
    mail_id: UUID
    link: str  # the activation link the invitation answered with, and mailed

    @property
    def token(self) -> bytes:
        return parse_qs(urlsplit(self.link).query)["token"][0].encode()


def mail_settings(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
                  redis_url: str, sink: SmtpSink, **overrides: Any) -> Settings:
    return node_settings(postgres, fresh_database("mail"), redis_url,
                         **sink.settings(**overrides))


async def invite(node: Node, email: str = "ann@example.com") -> Invitation:
    """The owner invites `email`: the invitation's mail is asked for."""
    owner = await node.setup_and_login()
    response = await node.client.post(
        "/console/api/workspaces/current/members/invite-email", headers=owner,
        json={"emails": [email], "role": "editor", "language": "zh-Hans"})
    assert response.status_code == 201, response.text
    [result] = response.json()["invitation_results"]
    store = node.container.store
    [requested] = [e for e in store.read_from(0, store.max_position())
                   if isinstance(e.payload, MailRequested) and e.payload.to == email]
    return Invitation(requested.aggregate_id, result["url"])


async def status(node: Node, mail_id: UUID, expected: str) -> dict[str, Any] | None:
    found = (await mail_status_of(node.container.engine, [mail_id])).get(mail_id)
    return found if found is not None and found["status"] == expected else None


async def nothing_pending(node: Node) -> bool:
    state = await node.container.bus.group_state(OUTBOX.name, [OUTBOX.name])
    return state.oldest_unacked is None


async def recorded(node: Node, mail_id: UUID) -> list[str]:
    async with node.container.engine.connect() as conn:
        return list((await conn.execute(text(
            "SELECT topic FROM stored_events WHERE originator_id = :m ORDER BY originator_version"),
            {"m": mail_id})).scalars())


def logged(caplog: pytest.LogCaptureFixture) -> bytes:
    """Every log record of the test, with its structured fields."""
    return b"\n".join(repr(r.__dict__).encode() for r in caplog.records)


async def test_a_requested_mail_is_sent_once_with_its_link(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = mail_settings(postgres, fresh_database, redis_url, smtp_sink)
    async with running_node(settings, roles=[*WRITES, OUTBOX_ROLE]) as node:
        invitation = await invite(node)
        mail_id = invitation.mail_id
        [mail] = await smtp_sink.wait_for(1)
        assert mail.recipients == ["ann@example.com"]
        assert mail.subject == "立即加入 Dify 工作空间"
        assert mail.link("/activate") == invitation.link
        assert f'href="{escape(invitation.link)}"' in mail.html
        assert mail.message_id == f"<mail.{mail_id}@eddy.test>"
        sent = await eventually(lambda: status(node, mail_id, "sent"))
        assert sent["sent_at"] is not None and sent["error"] is None
        await eventually(lambda: nothing_pending(node))
        assert len(smtp_sink.received()) == 1
        assert await recorded(node, mail_id) == ["Mail:MailRequested", "Mail:MailSent"]
        # the token travelled sealed: no event, stream or dead letter holds it in plaintext
        assert not [b for b in await everything_recorded(node, "console_v1.mails")
                    if invitation.token in b]
        assert b"mail sent" in logged(caplog)
        assert invitation.token not in logged(caplog)


def mail_worker(settings: Settings, member: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--roles", OUTBOX_ROLE, "--member", member],
        env={**os.environ, **settings.as_env(LOG_LEVEL="WARNING"), **env}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_a_worker_killed_between_sending_and_acknowledging_sends_nothing_again(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        smtp_sink: SmtpSink) -> None:
    # short leases: the killed member's partition moves to the next one within a second
    settings = mail_settings(postgres, fresh_database, redis_url, smtp_sink,
                             REDIS_BUS_LEASE_SECONDS=1.0)
    async with running_node(settings, roles=WRITES) as node:
        first = mail_worker(settings, "mail-1", EDDY_FAULT_MAIL_PAUSE_SECONDS="600")
        workers = [first]
        try:
            mail_id = (await invite(node)).mail_id
            await smtp_sink.wait_for(1, timeout=120)  # a worker process starting on a busy host
            # sent and recorded, not acknowledged: the worker waits in the fault hook
            await eventually(lambda: status(node, mail_id, "sent"), timeout=60)
            assert not await nothing_pending(node)
            first.send_signal(signal.SIGKILL)
            first.wait()
            workers.append(mail_worker(settings, "mail-2"))
            await eventually(lambda: nothing_pending(node), timeout=120)  # redelivered, acked
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
        assert len(smtp_sink.received()) == 1
        assert await recorded(node, mail_id) == ["Mail:MailRequested", "Mail:MailSent"]


async def test_a_server_down_past_the_retries_dead_letters_the_mail_and_a_replay_sends_it(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = operator_env(monkeypatch, mail_settings(
        postgres, fresh_database, redis_url, smtp_sink, MAIL_SEND_MAX_ATTEMPTS=3))
    async with running_node(settings, roles=[*WRITES, OUTBOX_ROLE]) as node:
        smtp_sink.stop()
        invitation = await invite(node)
        mail_id = invitation.mail_id
        failed = await eventually(lambda: status(node, mail_id, "failed"))
        # members see the kind of failure; the detail stays in the dead letter and the log
        assert failed["error"] == "smtp_unavailable"
        [letter] = await dead_letters()
        assert letter["attempts"] == 3 and letter["key"] == str(mail_id)
        assert "Connection refused" in letter["error"]
        assert await recorded(node, mail_id) == ["Mail:MailRequested",
                                                 "Mail:MailDeliveryFailed"]

        smtp_sink.start()
        code, _, err = await eddy("dlq", "replay", OUTBOX.name, letter["id"])
        assert code == 0, err
        [mail] = await smtp_sink.wait_for(1)
        assert mail.link("/activate") == invitation.link
        await eventually(lambda: status(node, mail_id, "sent"))
        await eventually(lambda: nothing_pending(node))
        assert len(smtp_sink.received()) == 1 and await dead_letters() == []
        # the replayed dead letter held the token sealed only, as the event does
        assert not [b for b in await everything_recorded(node) if invitation.token in b]
        assert b"dead-lettered" in logged(caplog)
        assert invitation.token not in logged(caplog)


async def test_a_refused_mail_is_dead_lettered_at_once(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = operator_env(monkeypatch, mail_settings(
        postgres, fresh_database, redis_url, smtp_sink, MAIL_SEND_MAX_ATTEMPTS=5))
    async with running_node(settings, roles=[*WRITES, OUTBOX_ROLE]) as node:
        smtp_sink.refuse(550)
        mail_id = (await invite(node)).mail_id
        failed = await eventually(lambda: status(node, mail_id, "failed"))
        assert failed["error"] == "smtp_rejected 550"  # not the server's words
        [letter] = await dead_letters()
        assert letter["attempts"] == 1 and "refused by the test" in letter["error"]
        assert smtp_sink.received() == []


async def dead_letters() -> list[dict[str, Any]]:
    code, out, err = await eddy("dlq", "list", "--topic", OUTBOX.name, "--json")
    assert code == 0, err
    return json_lines(out)
