"""Forgot password and e-mail code login end to end on Postgres and Redis, the code read
from the mail an SMTP server (the aiosmtpd sink) received from the mail processor; the
code and tokens are nowhere else in plaintext."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from tests.harness import Node, everything_recorded, in_plaintext, node_settings, running_node
from tests.smtp_sink import SinkMessage, SmtpSink

OWNER = {"email": "owner@example.com", "password": "passw0rd1"}
NEW_PASSWORD = "n3w-passw0rd"


@pytest.fixture
async def node(postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
               smtp_sink: SmtpSink) -> AsyncIterator[Node]:
    """A node of every role, the mail processor included, mailing to the sink."""
    settings = node_settings(postgres, fresh_database("accounts"), redis_url,
                             **smtp_sink.settings())
    async with running_node(settings) as n:
        yield n


def code_in(mail: SinkMessage) -> str:
    found = re.search(r"(?<!\d)(\d{6})(?!\d)", mail.text)
    assert found, f"no code in {mail.text!r}"
    return found.group(1)


async def status_of_login(node: Node, password: str) -> int:
    response = await node.client.post("/console/api/login", json={**OWNER, "password": password})
    return response.status_code


async def test_forgot_password_by_the_mailed_code(node: Node, smtp_sink: SmtpSink) -> None:
    await node.setup_and_login()
    sent = await node.client.post("/console/api/forgot-password",
                                  json={"email": OWNER["email"], "language": "en-US"})
    assert sent.status_code == 200, sent.text
    [mail] = await smtp_sink.wait_for(1)
    assert mail.recipients == [OWNER["email"]]
    minutes = node.container.settings.RESET_PASSWORD_TOKEN_EXPIRY_MINUTES
    assert f"expire in {minutes} minutes" in mail.text
    code = code_in(mail)

    checked = await node.client.post("/console/api/forgot-password/validity", json={
        "email": OWNER["email"], "code": code, "token": sent.json()["data"]})
    assert checked.status_code == 200 and checked.json()["is_valid"] is True
    reset = await node.client.post("/console/api/forgot-password/resets", json={
        "token": checked.json()["token"], "new_password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD})
    assert reset.status_code == 200 and reset.json() == {"result": "success"}
    assert await status_of_login(node, NEW_PASSWORD) == 200
    assert await status_of_login(node, OWNER["password"]) == 401

    secrets = [code, sent.json()["data"], checked.json()["token"], NEW_PASSWORD]
    recorded = await everything_recorded(node)
    assert not [s for s in secrets if in_plaintext(s, recorded)]
    assert len(smtp_sink.received()) == 1


async def test_email_code_login_by_the_mailed_code(node: Node, smtp_sink: SmtpSink) -> None:
    await node.setup_and_login()
    sent = await node.client.post("/console/api/email-code-login",
                                  json={"email": OWNER["email"], "language": "zh-Hans"})
    assert sent.status_code == 200, sent.text
    [mail] = await smtp_sink.wait_for(1)
    assert mail.recipients == [OWNER["email"]]
    code = code_in(mail)

    # The code twice at once: one request signs in, the other finds the token spent.
    check = {"email": OWNER["email"], "code": code, "token": sent.json()["data"]}
    both = await asyncio.gather(*(node.client.post("/console/api/email-code-login/validity",
                                                   json=check) for _ in range(2)))
    assert sorted(r.status_code for r in both) == [200, 400], [r.text for r in both]
    signed_in, spent = sorted(both, key=lambda r: r.status_code)
    assert spent.json()["code"] == "invalid_or_expired_token"
    tokens = signed_in.json()["data"]
    profile = await node.client.get("/console/api/account/profile", headers={
        "Authorization": f"Bearer {tokens['access_token']}"})
    assert profile.status_code == 200 and profile.json()["email"] == OWNER["email"]

    recorded = await everything_recorded(node)
    assert not [s for s in (code, sent.json()["data"]) if in_plaintext(s, recorded)]
    assert len(smtp_sink.received()) == 1
