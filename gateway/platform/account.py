"""Console account flows on Dify's paths and answers: forgot password (a mailed 6-digit
code, then a reset token), e-mail code login, password change, logout, the profile.

Codes and tokens are made here and kept only hashed (gateway.platform.codes); the mail gets
the code sealed through a command (RequestPasswordReset, RequestEmailCodeLogin), so no
event, topic, dead letter or log line carries either in plaintext.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request

from gateway import auth
from gateway.auth import ConsoleUser, CurrentUser, LoginLimiter, Tokens
from gateway.container import GatewayContainer
from gateway.deps import command_gateway, get_container
from gateway.mail import seal_mail_params
from gateway.platform.codes import RESET, Codes, Limit, limit_ip, new_code
from projections.platform import queries
from schemas.errors import (
    AccountNotFound,
    CurrentPasswordIncorrect,
    EddyError,
    EmailCodeLoginRateLimited,
    LoginRateLimited,
    PasswordMismatch,
    PasswordResetLimited,
    PasswordResetRateLimited,
    RepeatPasswordMismatch,
    Unauthorized,
)
from schemas.platform import api
from schemas.platform import commands as cmd

router = APIRouter(prefix="/console/api")

# Dify's limits (AccountService): mails per e-mail, and wrong reset codes per e-mail.
RESET_MAILS_PER_MINUTE = 1
LOGIN_MAILS_PER_5_MINUTES = 3
WRONG_RESET_CODES = 5


def _reset_codes(c: GatewayContainer) -> Codes:
    return Codes(c.kv, c.settings.SECRET_KEY, "reset_password",
                 c.settings.RESET_PASSWORD_TOKEN_EXPIRY_MINUTES * 60)


def _login_codes(c: GatewayContainer) -> Codes:
    return Codes(c.kv, c.settings.SECRET_KEY, "email_code_login",
                 c.settings.EMAIL_CODE_LOGIN_TOKEN_EXPIRY_MINUTES * 60)


def _mail_language(language: str | None) -> str:
    # Dify mails in Simplified Chinese when asked, else in English.
    return "zh-Hans" if language == "zh-Hans" else "en-US"


async def _active_account(c: GatewayContainer, email: str) -> dict[str, Any]:
    """The activated account of an e-mail. Of an unknown one Dify with registration off (a
    self-hosted Dify's default) says account_not_found, and so is an invited account that
    has not activated yet answered."""
    account = await queries.account_by_email(c.engine, email)
    if account is None or account["status"] != "active":
        raise AccountNotFound()
    return account


async def _mail_code(request: Request, body: api.CodeMailRequest, codes: Codes,
                     limit: Limit, limited: EddyError,
                     command: type[cmd.RequestPasswordReset | cmd.RequestEmailCodeLogin]
                     ) -> dict[str, Any]:
    c = get_container(request)
    await limit_ip(c.kv, request.client.host if request.client else "unknown",
                   c.settings.EMAIL_SEND_IP_LIMIT_PER_MINUTE)
    account = await _active_account(c, body.email)
    await limit.use(account["email"], limited)
    code = new_code()
    token = await codes.issue(account["email"], code)
    await command_gateway(request).send(
        command(account_id=account["id"], language=_mail_language(body.language),
                sealed_params=seal_mail_params(c.settings.SECRET_KEY, {"code": code}),
                expiry_minutes=codes.ttl // 60),
        aggregate_id=account["id"], tenant_id=None, actor_id=None, read_your_writes=False)
    return {"result": "success", "data": token}


async def _set_password(request: Request, account_id: UUID, password: str) -> None:
    engine = get_container(request).engine
    credentials_id = await auth.store_credentials(engine, account_id, password)
    try:
        await command_gateway(request).send(
            cmd.ChangePassword(account_id=account_id, credentials_id=credentials_id),
            aggregate_id=account_id, tenant_id=None, actor_id=account_id)
    except EddyError:
        await auth.discard_credentials(engine, credentials_id)
        raise


# --- forgot password ------------------------------------------------------------------------


@router.post("/forgot-password")
async def forgot_password(request: Request, body: api.CodeMailRequest) -> dict[str, Any]:
    c = get_container(request)
    return await _mail_code(
        request, body, _reset_codes(c),
        Limit(c.kv, "reset_password_rate_limit", RESET_MAILS_PER_MINUTE, 60),
        PasswordResetRateLimited(), cmd.RequestPasswordReset)


@router.post("/forgot-password/validity")
async def forgot_password_validity(request: Request,
                                   body: api.CodeCheckRequest) -> dict[str, Any]:
    c = get_container(request)
    wrong_codes = Limit(c.kv, "forgot_password_error_rate_limit", WRONG_RESET_CODES,
                        c.settings.FORGOT_PASSWORD_LOCKOUT_DURATION)
    # Counted before the check, so parallel guesses cannot outrun the limit.
    await wrong_codes.use(body.email, PasswordResetLimited())
    codes = _reset_codes(c)
    checked = await codes.check(body.email, body.code, body.token)
    await wrong_codes.clear(body.email)
    # The code's token is spent; the reset takes a new one, good only for that.
    token = await codes.issue(checked.email, body.code, phase=RESET)
    return {"is_valid": True, "email": checked.email, "token": token}


@router.post("/forgot-password/resets")
async def forgot_password_reset(request: Request,
                                body: api.PasswordResetRequest) -> dict[str, Any]:
    if body.new_password != body.password_confirm:
        raise PasswordMismatch()
    c = get_container(request)
    spent = await _reset_codes(c).spend(RESET, body.token)
    account = await _active_account(c, spent.email)
    await _set_password(request, account["id"], body.new_password)
    # Whoever knew the old password is logged out everywhere.
    await Tokens(request).end_sessions(account["id"])
    return {"result": "success"}


# --- e-mail code login ----------------------------------------------------------------------


@router.post("/email-code-login")
async def email_code_login(request: Request, body: api.CodeMailRequest) -> dict[str, Any]:
    c = get_container(request)
    return await _mail_code(
        request, body, _login_codes(c),
        Limit(c.kv, "email_code_login_rate_limit", LOGIN_MAILS_PER_5_MINUTES, 300),
        EmailCodeLoginRateLimited(), cmd.RequestEmailCodeLogin)


@router.post("/email-code-login/validity")
async def email_code_login_validity(request: Request,
                                    body: api.CodeCheckRequest) -> dict[str, Any]:
    c = get_container(request)
    # Wrong codes lock the e-mail's code login out as wrong passwords lock its password
    # login out. Counted apart: a password lockout (anyone can cause one) leaves the code
    # login open, and a code login clears it, as Dify does.
    wrong_codes = Limit(c.kv, "email_code_login_error_rate_limit",
                        c.settings.LOGIN_LOCKOUT_ATTEMPTS, c.settings.LOGIN_LOCKOUT_DURATION)
    await wrong_codes.use(body.email, LoginRateLimited())
    checked = await _login_codes(c).check(body.email, body.code, body.token)
    account = await _active_account(c, checked.email)
    await wrong_codes.clear(body.email)
    await LoginLimiter(request).succeeded(body.email)
    return {"result": "success", "data": await Tokens(request).issue(account["id"])}


# --- the signed-in account ------------------------------------------------------------------


@router.post("/account/password")
async def change_password(request: Request, body: api.ChangePasswordRequest,
                          user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    if body.new_password != body.repeat_new_password:
        raise RepeatPasswordMismatch()
    account = await queries.account_by_id(get_container(request).engine, user.account_id)
    if account is None:
        raise Unauthorized("Account not found.")
    # An account with no password yet (invited, activated without one) sets its first.
    if account["password_hash"] is not None and not await asyncio.to_thread(
            auth.verify_password, account["password_hash"], body.password or ""):
        raise CurrentPasswordIncorrect()
    await _set_password(request, user.account_id, body.new_password)
    await Tokens(request).end_sessions(user.account_id, keep=user.session_id)
    return {"result": "success"}


@router.post("/logout")
async def logout(request: Request, user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    if user.session_id is not None:
        await Tokens(request).log_out(user.session_id)
    return {"result": "success"}


@router.get("/account/profile")
async def profile(request: Request, user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    account = await queries.account_by_id(get_container(request).engine, user.account_id)
    if account is None:
        raise Unauthorized("Account not found.")
    # Dify's account fields; what Eddy does not keep (avatar, theme, last login) is null.
    return {
        "id": str(account["id"]), "name": account["name"], "avatar": None,
        "avatar_url": None, "email": account["email"],
        "is_password_set": account["credentials_id"] is not None,
        "interface_language": account["interface_language"], "interface_theme": "light",
        "timezone": account["timezone"], "last_login_at": None, "last_login_ip": None,
        "created_at": int(account["created_at"].timestamp()),
    }
