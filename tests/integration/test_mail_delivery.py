"""Mail sent by the mail processor (the `mail.outbox` consumer group) to a real SMTP server
(the aiosmtpd sink): each mail once, whatever happens between sending and acknowledging;
a server that stays down ends in the dead letters and on the mail's status, and
`eddy dlq replay` sends it once it is back.

The mails are asked for as any command's handler asks: `request_mail` in the command's
unit of work, its secret params sealed by the gateway's `seal_mail_params`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from commands.aggregate import Context
from commands.mail.aggregates import request_mail
from commands.unit_of_work import UnitOfWork
from config import Settings
from contexts.mail import OUTBOX
from gateway.mail import seal_mail_params
from projections.mail.queries import mail_status_of
from schemas.mail.events import MailTemplate
from tests.harness import Node, eventually, everything_recorded, node_settings, running_node
from tests.integration.conftest import operator_env
from tests.integration.test_cli_operations import eddy, json_lines
from tests.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "activation-token-4f1c9a"  # a secret: never in plaintext outside the mail itself
LINK = f"http://console.test/activate?token={TOKEN}"


def mail_settings(postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
                  redis_url: str, sink: SmtpSink, **overrides: Any) -> Settings:
    return node_settings(postgres, fresh_database("mail"), redis_url,
                         **sink.settings(**overrides))


async def ask_for_mail(node: Node, template: MailTemplate = "invite_member",
                       to: str = "ann@example.com", language: str = "en-US") -> UUID:
    """What an inviting command's handler records: the invitation's mail, its token sealed."""
    command_id = uuid4()
    ctx = Context(tenant_id=uuid4(), actor_id=uuid4(), correlation_id=command_id,
                  causation_id=command_id)
    uow = UnitOfWork(node.container.store, ctx)
    mail_id = request_mail(
        uow, "invitation", template, to, language=language,
        params={"inviter_name": "Owner", "workspace_name": "Owner's Workspace"},
        sealed_params=seal_mail_params(node.container.settings.SECRET_KEY, {"url": LINK}))
    await asyncio.to_thread(uow.commit)
    return mail_id


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


async def test_a_requested_mail_is_sent_once_with_its_link(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        smtp_sink: SmtpSink) -> None:
    settings = mail_settings(postgres, fresh_database, redis_url, smtp_sink)
    async with running_node(settings, roles=["relay", "projections", OUTBOX_ROLE]) as node:
        mail_id = await ask_for_mail(node, language="zh-Hans")
        [mail] = await smtp_sink.wait_for(1)
        assert mail.recipients == ["ann@example.com"]
        assert mail.subject == "立即加入 Dify 工作空间"
        assert mail.link("/activate") == LINK
        assert f'href="{LINK}"' in mail.html
        assert mail.message_id == f"<mail.{mail_id}@eddy.test>"
        sent = await eventually(lambda: status(node, mail_id, "sent"))
        assert sent["sent_at"] is not None and sent["error"] is None
        await eventually(lambda: nothing_pending(node))
        assert len(smtp_sink.received()) == 1
        assert await recorded(node, mail_id) == ["Mail:MailRequested", "Mail:MailSent"]
        # the token travelled sealed: no event, stream or dead letter holds it in plaintext
        assert not [b for b in await everything_recorded(node, "console_v1.mails")
                    if TOKEN.encode() in b]


OUTBOX_ROLE = f"mail.{OUTBOX.role}"


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
    async with running_node(settings, roles=["relay", "projections"]) as node:
        first = mail_worker(settings, "mail-1", EDDY_FAULT_MAIL_PAUSE_SECONDS="600")
        workers = [first]
        try:
            mail_id = await ask_for_mail(node)
            await smtp_sink.wait_for(1)
            # sent and recorded, not acknowledged: the worker waits in the fault hook
            await eventually(lambda: status(node, mail_id, "sent"))
            assert not await nothing_pending(node)
            first.send_signal(signal.SIGKILL)
            first.wait()
            workers.append(mail_worker(settings, "mail-2"))
            await eventually(lambda: nothing_pending(node), timeout=60)  # redelivered, acked
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
        assert len(smtp_sink.received()) == 1
        assert await recorded(node, mail_id) == ["Mail:MailRequested", "Mail:MailSent"]


async def test_a_server_down_past_the_retries_dead_letters_the_mail_and_a_replay_sends_it(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = operator_env(monkeypatch, mail_settings(
        postgres, fresh_database, redis_url, smtp_sink, MAIL_SEND_MAX_ATTEMPTS=3))
    async with running_node(settings, roles=["relay", "projections", OUTBOX_ROLE]) as node:
        smtp_sink.stop()
        mail_id = await ask_for_mail(node)
        failed = await eventually(lambda: status(node, mail_id, "failed"))
        assert "Connection refused" in failed["error"]
        [letter] = await dead_letters()
        assert letter["attempts"] == 3 and letter["key"] == str(mail_id)
        assert await recorded(node, mail_id) == ["Mail:MailRequested",
                                                 "Mail:MailDeliveryFailed"]

        smtp_sink.start()
        code, _, err = await eddy("dlq", "replay", OUTBOX.name, letter["id"])
        assert code == 0, err
        [mail] = await smtp_sink.wait_for(1)
        assert mail.link("/activate") == LINK
        await eventually(lambda: status(node, mail_id, "sent"))
        await eventually(lambda: nothing_pending(node))
        assert len(smtp_sink.received()) == 1 and await dead_letters() == []
        # the replayed dead letter held the token sealed only, as the event does
        assert not [b for b in await everything_recorded(node) if TOKEN.encode() in b]


async def test_a_refused_mail_is_dead_lettered_at_once(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = operator_env(monkeypatch, mail_settings(
        postgres, fresh_database, redis_url, smtp_sink, MAIL_SEND_MAX_ATTEMPTS=5))
    async with running_node(settings, roles=["relay", "projections", OUTBOX_ROLE]) as node:
        smtp_sink.refuse(550)
        mail_id = await ask_for_mail(node)
        failed = await eventually(lambda: status(node, mail_id, "failed"))
        assert "550" in failed["error"]
        [letter] = await dead_letters()
        assert letter["attempts"] == 1
        assert smtp_sink.received() == []


async def dead_letters() -> list[dict[str, Any]]:
    code, out, err = await eddy("dlq", "list", "--topic", OUTBOX.name, "--json")
    assert code == 0, err
    return json_lines(out)
