"""The console's account flows on the in-memory node (tests/memory.py), through the real
FastAPI app: forgot password, e-mail code login, password change, logout, the profile.
Each refusal answers in Dify's shape and changes nothing; codes and tokens never leave the
gateway in plaintext. The mail a code request asks for is read here as the mail processor
reads it (its sealed params opened with SECRET_KEY); tests/e2e reads it from an SMTP sink."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

import adapters.kv.memory
import gateway.platform.codes
from tests.harness import Node, add_account_with_workspace, in_plaintext, record_publishes
from tests.invitations import sealed_params

OWNER = {"email": "owner@example.com", "password": "passw0rd1"}
NEW_PASSWORD = "n3w-passw0rd"


def error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "message": message, "status": status}


INVALID_TOKEN = error(400, "invalid_or_expired_token", "The token is invalid or has expired.")
WRONG_CODE = error(400, "email_code_error", "Email code is invalid or expired.")
NO_ACCOUNT = error(400, "account_not_found", "Account not found.")
LOCKED_OUT = error(429, "email_code_login_limit",
                   "Too many incorrect password attempts. Please try again later.")


def answer(response: Any) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json()


def events(node: Node) -> list[Any]:
    """What requests recorded (not the mail processor's record of sending their mails,
    which comes when it comes)."""
    return [e for e in node.container.store.read_from(0, 100_000)
            if e.type not in ("MailSent", "MailDeliveryFailed")]


async def mailed_code(node: Node, template: str) -> str:
    """The code in the newest mail of this template to the owner."""
    return str((await sealed_params(node, OWNER["email"], template))["code"])


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def tokens_of_login(node: Node, password: str = OWNER["password"]) -> dict[str, str]:
    response = await node.client.post("/console/api/login",
                                      json={**OWNER, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def works(node: Node, tokens: dict[str, str]) -> tuple[bool, bool]:
    """Whether the access token still opens the console, and the refresh token refreshes."""
    access = await node.client.get("/console/api/account/profile", headers=bearer(tokens))
    refresh = await node.client.post("/console/api/refresh-token",
                                     json={"refresh_token": tokens["refresh_token"]})
    return access.status_code == 200, refresh.status_code == 200


async def can_login(node: Node, password: str) -> bool:
    response = await node.client.post("/console/api/login", json={**OWNER, "password": password})
    return response.status_code == 200


def advance_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The clocks of the key-value store (its expiries) and of the codes `seconds` ahead."""
    ahead = SimpleNamespace(monotonic=lambda: time.monotonic() + seconds,
                            time=lambda: time.time() + seconds)
    monkeypatch.setattr(adapters.kv.memory, "time", ahead)
    monkeypatch.setattr(gateway.platform.codes, "time", ahead)


# --- forgot password ------------------------------------------------------------------------


async def test_forgot_password_mails_a_code_that_resets_the_password_once(node: Node) -> None:
    await node.setup_and_login()
    before = await tokens_of_login(node)

    sent = await node.client.post("/console/api/forgot-password",
                                  json={"email": OWNER["email"], "language": "zh-Hans"})
    assert sent.status_code == 200 and sent.json()["result"] == "success"
    token = sent.json()["data"]
    code = await mailed_code(node, "reset_password")
    assert len(code) == 6 and code.isdigit()
    mail = [e for e in events(node) if e.type == "MailRequested"][-1].payload
    assert (mail.to, mail.language, mail.params) == (
        OWNER["email"], "zh-Hans",
        {"expiry_minutes": node.container.settings.RESET_PASSWORD_TOKEN_EXPIRY_MINUTES})
    recorded = len(events(node))

    validity = "/console/api/forgot-password/validity"
    check = {"email": OWNER["email"], "code": code, "token": token}
    assert answer(await node.client.post(validity, json={**check, "code": other_code(code)})
                  ) == WRONG_CODE
    assert answer(await node.client.post(validity, json={**check, "email": "x@example.com"})
                  ) == error(400, "invalid_email", "The email address is not valid.")
    # The code's token is not a reset token.
    resets = "/console/api/forgot-password/resets"
    reset = {"new_password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    assert answer(await node.client.post(resets, json={**reset, "token": token})
                  ) == INVALID_TOKEN

    valid = await node.client.post(validity, json=check)  # refusals left the token usable
    assert valid.status_code == 200
    assert valid.json() | {"token": "?"} == {"is_valid": True, "email": OWNER["email"],
                                             "token": "?"}
    reset_token = valid.json()["token"]
    assert reset_token != token
    assert answer(await node.client.post(validity, json=check)) == INVALID_TOKEN  # spent

    assert answer(await node.client.post(resets, json={
        **reset, "token": reset_token, "password_confirm": "an0ther-password"})
    ) == error(400, "password_mismatch", "The passwords do not match.")
    weak = await node.client.post(resets, json={
        "token": reset_token, "new_password": "lettersonly", "password_confirm": "lettersonly"})
    assert weak.status_code == 400 and weak.json()["code"] == "invalid_param"
    assert "letters and numbers" in weak.json()["message"]
    assert len(events(node)) == recorded  # no refusal recorded anything
    assert await can_login(node, OWNER["password"])

    done = await node.client.post(resets, json={**reset, "token": reset_token})
    assert answer(done) == (200, {"result": "success"})
    assert [e.type for e in events(node)[recorded:]] == ["AccountPasswordChanged"]
    assert answer(await node.client.post(resets, json={**reset, "token": reset_token})
                  ) == INVALID_TOKEN
    assert not await can_login(node, OWNER["password"])
    assert await can_login(node, NEW_PASSWORD)
    # Whoever held a session from before the reset is logged out.
    assert await works(node, before) == (False, False)


async def test_forgot_password_refuses_unknown_emails_and_floods(node: Node) -> None:
    await node.setup_and_login()
    recorded = len(events(node))
    unknown = await node.client.post("/console/api/forgot-password",
                                     json={"email": "nobody@example.com"})
    assert answer(unknown) == NO_ACCOUNT
    bad = await node.client.post("/console/api/forgot-password", json={"email": "not-an-email"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_param"

    first = await node.client.post("/console/api/forgot-password", json={"email": OWNER["email"]})
    assert first.status_code == 200
    after_first = len(events(node))
    again = await node.client.post("/console/api/forgot-password",
                                   json={"email": OWNER["email"]})
    assert answer(again) == error(
        429, "password_reset_rate_limit_exceeded",
        "Too many password reset emails have been sent. Please try again in 1 minutes.")
    assert len(events(node)) == after_first
    assert sorted(e.type for e in events(node)[recorded:]) == ["MailRequested",
                                                               "PasswordResetRequested"]

    # Mails asked for from one IP, whoever they are for (unknown e-mails count too).
    limit = node.container.settings.EMAIL_SEND_IP_LIMIT_PER_MINUTE
    for n in range(limit - 3):
        response = await node.client.post("/console/api/forgot-password",
                                          json={"email": f"n{n}@example.com"})
        assert response.json()["code"] == "account_not_found"
    flooded = await node.client.post("/console/api/email-code-login",
                                     json={"email": OWNER["email"]})
    assert answer(flooded) == error(
        429, "email_send_ip_limit",
        "Too many emails have been sent from this IP address recently. Please try again later.")
    assert len(events(node)) == after_first


async def test_wrong_reset_codes_lock_the_email_out(node: Node) -> None:
    await node.setup_and_login()
    token = (await node.client.post("/console/api/forgot-password",
                                    json={"email": OWNER["email"]})).json()["data"]
    code = await mailed_code(node, "reset_password")
    check = {"email": OWNER["email"], "code": other_code(code), "token": token}
    for _ in range(5):
        assert answer(await node.client.post("/console/api/forgot-password/validity",
                                             json=check)) == WRONG_CODE
    locked = await node.client.post("/console/api/forgot-password/validity",
                                    json={**check, "code": code})
    assert answer(locked) == error(
        429, "email_password_reset_limit",
        "Too many failed password reset attempts. Please try again in 24 hours.")


async def test_a_code_expires_with_its_setting(node: Node,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    await node.setup_and_login()
    minutes = node.container.settings.RESET_PASSWORD_TOKEN_EXPIRY_MINUTES
    token = (await node.client.post("/console/api/forgot-password",
                                    json={"email": OWNER["email"]})).json()["data"]
    check = {"email": OWNER["email"], "code": await mailed_code(node, "reset_password"),
             "token": token}
    advance_clock(monkeypatch, minutes * 60 - 30)  # alive, and a refusal keeps its expiry
    assert answer(await node.client.post("/console/api/forgot-password/validity", json={
        **check, "code": other_code(check["code"])})) == WRONG_CODE
    advance_clock(monkeypatch, minutes * 60 + 1)
    assert answer(await node.client.post("/console/api/forgot-password/validity",
                                         json=check)) == INVALID_TOKEN


# --- e-mail code login ----------------------------------------------------------------------


async def test_email_code_login_signs_in_once_per_code(node: Node) -> None:
    await node.setup_and_login()
    sent = await node.client.post("/console/api/email-code-login",
                                  json={"email": OWNER["email"]})
    assert sent.status_code == 200 and sent.json()["result"] == "success"
    check = {"email": OWNER["email"], "code": await mailed_code(node, "email_code_login"),
             "token": sent.json()["data"], "language": "en-US"}
    validity = "/console/api/email-code-login/validity"
    assert answer(await node.client.post(
        validity, json={**check, "code": other_code(check["code"])})) == WRONG_CODE

    # Two at once with the right code: one signs in.
    both = await asyncio.gather(*(node.client.post(validity, json=check) for _ in range(2)))
    assert sorted(r.status_code for r in both) == [200, 400]
    signed_in = next(r for r in both if r.status_code == 200)
    assert signed_in.json()["result"] == "success"
    assert answer(next(r for r in both if r.status_code == 400)) == INVALID_TOKEN
    tokens = signed_in.json()["data"]
    assert set(tokens) == {"access_token", "refresh_token"}
    assert await works(node, tokens) == (True, True)
    assert answer(await node.client.post(validity, json=check)) == INVALID_TOKEN

    assert answer(await node.client.post("/console/api/email-code-login",
                                         json={"email": "nobody@example.com"})) == NO_ACCOUNT


async def test_email_code_login_limits_mails_and_wrong_codes(node: Node) -> None:
    await node.setup_and_login()
    tokens = []
    for _ in range(3):
        sent = await node.client.post("/console/api/email-code-login",
                                      json={"email": OWNER["email"]})
        assert sent.status_code == 200
        tokens.append(sent.json()["data"])
    recorded = len(events(node))
    fourth = await node.client.post("/console/api/email-code-login",
                                    json={"email": OWNER["email"]})
    assert answer(fourth) == error(
        429, "email_code_login_rate_limit_exceeded",
        "Too many login emails have been sent. Please try again in 5 minutes.")
    assert len(events(node)) == recorded

    code = await mailed_code(node, "email_code_login")
    check = {"email": OWNER["email"], "code": other_code(code), "token": tokens[-1]}
    for _ in range(node.container.settings.LOGIN_LOCKOUT_ATTEMPTS):
        assert answer(await node.client.post("/console/api/email-code-login/validity",
                                             json=check)) == WRONG_CODE
    locked = await node.client.post("/console/api/email-code-login/validity",
                                    json={**check, "code": code})
    assert answer(locked) == LOCKED_OUT
    assert await can_login(node, OWNER["password"])  # the password login is another door


async def test_a_code_login_opens_what_wrong_passwords_locked(node: Node) -> None:
    await node.setup_and_login()
    for _ in range(node.container.settings.LOGIN_LOCKOUT_ATTEMPTS + 1):
        await node.client.post("/console/api/login", json={**OWNER, "password": "wr0ng-one"})
    assert answer(await node.client.post("/console/api/login", json=OWNER)) == LOCKED_OUT

    token = (await node.client.post("/console/api/email-code-login",
                                    json={"email": OWNER["email"]})).json()["data"]
    signed_in = await node.client.post("/console/api/email-code-login/validity", json={
        "email": OWNER["email"], "code": await mailed_code(node, "email_code_login"),
        "token": token})
    assert signed_in.status_code == 200
    assert await can_login(node, OWNER["password"])


# --- password change, logout, profile -------------------------------------------------------


async def test_changing_the_password_keeps_this_session_and_ends_the_others(node: Node) -> None:
    await node.setup_and_login()
    mine, other = await tokens_of_login(node), await tokens_of_login(node)
    change = "/console/api/account/password"
    body = {"password": OWNER["password"], "new_password": NEW_PASSWORD,
            "repeat_new_password": NEW_PASSWORD}
    recorded = len(events(node))

    assert answer(await node.client.post(change, headers=bearer(mine), json={
        **body, "repeat_new_password": "s0mething-else"})) == error(
        400, "repeat_password_not_match", "New password and repeat password does not match.")
    assert answer(await node.client.post(change, headers=bearer(mine), json={
        **body, "password": "wr0ng-password"})) == error(
        400, "current_password_incorrect", "Current password is incorrect.")
    weak = await node.client.post(change, headers=bearer(mine), json={
        **body, "new_password": "12345678", "repeat_new_password": "12345678"})
    assert weak.status_code == 400 and weak.json()["code"] == "invalid_param"
    anonymous = await node.client.post(change, json=body)
    assert anonymous.status_code == 401
    assert len(events(node)) == recorded and await can_login(node, OWNER["password"])

    changed = await node.client.post(change, headers=bearer(mine), json=body)
    assert answer(changed) == (200, {"result": "success"})
    assert [e.type for e in events(node)[recorded:]] == ["AccountPasswordChanged"]
    assert not await can_login(node, OWNER["password"])
    assert await can_login(node, NEW_PASSWORD)
    assert await works(node, other) == (False, False)
    assert await works(node, mine) == (True, True)


async def test_logout_ends_this_session_only(node: Node) -> None:
    await node.setup_and_login()
    mine, other = await tokens_of_login(node), await tokens_of_login(node)
    out = await node.client.post("/console/api/logout", headers=bearer(mine))
    assert answer(out) == (200, {"result": "success"})
    assert await works(node, mine) == (False, False)
    assert await works(node, other) == (True, True)


async def test_profile_shows_the_signed_in_account(node: Node) -> None:
    auth = await node.setup_and_login()
    profile = await node.client.get("/console/api/account/profile", headers=auth)
    assert profile.status_code == 200
    shown = profile.json()
    assert {k: shown[k] for k in ("name", "email", "is_password_set", "interface_language",
                                  "timezone")} == {
        "name": "Owner", "email": OWNER["email"], "is_password_set": True,
        "interface_language": "en-US", "timezone": "UTC"}
    rival = await add_account_with_workspace(node, "rival@example.com")
    theirs = (await node.client.get("/console/api/account/profile", headers=rival)).json()
    assert theirs["email"] == "rival@example.com" and theirs["id"] != shown["id"]


# --- secrecy --------------------------------------------------------------------------------


async def test_codes_and_tokens_never_leave_the_gateway_in_plaintext(
        node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await node.setup_and_login()
    published = record_publishes(node, monkeypatch)
    secrets: list[str] = []

    reset_token = (await node.client.post("/console/api/forgot-password",
                                          json={"email": OWNER["email"]})).json()["data"]
    reset_code = await mailed_code(node, "reset_password")
    checked = (await node.client.post("/console/api/forgot-password/validity", json={
        "email": OWNER["email"], "code": reset_code, "token": reset_token})).json()
    assert (await node.client.post("/console/api/forgot-password/resets", json={
        "token": checked["token"], "new_password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD})).status_code == 200
    login_token = (await node.client.post("/console/api/email-code-login",
                                          json={"email": OWNER["email"]})).json()["data"]
    login_code = await mailed_code(node, "email_code_login")
    signed_in = await node.client.post("/console/api/email-code-login/validity", json={
        "email": OWNER["email"], "code": login_code, "token": login_token})
    assert signed_in.status_code == 200
    secrets += [reset_token, reset_code, checked["token"], login_token, login_code,
                NEW_PASSWORD, signed_in.json()["data"]["refresh_token"]]

    stored = b"".join(e.to_json() for e in node.container.store.read_from(0, 100_000))
    letters = b"".join(published)  # commands, events and any dead letter, as published
    logged = caplog.text.encode()
    kv = repr(vars(node.container.kv)).encode()  # keys and values of the key-value store
    assert letters and logged
    for secret in secrets:
        for where, text in (("event store", stored), ("bus", letters), ("logs", logged),
                            ("key-value store", kv)):
            assert not in_plaintext(secret, [text]), f"a secret in plaintext in the {where}"
