"""Console owner transfer (Dify's send-owner-transfer-confirm-email, owner-transfer-check,
members/{id}/owner-transfer): the owner is mailed a 6-digit code, confirms it for a transfer
token, and spends that token on the transfer. Codes and tokens are kept only hashed
(gateway.platform.codes); the mail gets the code sealed through RequestOwnerTransferCode."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.auth import ConsoleUser, CurrentUser
from gateway.container import GatewayContainer
from gateway.deps import command_gateway, get_container, parse_id
from gateway.mail import seal_mail_params
from gateway.platform.codes import Codes, Limit, limit_ip, new_code
from projections.platform import queries
from schemas.errors import (
    CannotTransferOwnerToSelf,
    InvalidEmail,
    MemberNotInTenant,
    NotOwner,
    OwnerTransferLimited,
    OwnerTransferRateLimited,
)
from schemas.platform import api
from schemas.platform import commands as cmd

router = APIRouter(prefix="/console/api")
TRANSFER = "transfer"  # the phase of a token whose code was confirmed
# Dify's limits (AccountService): one code mail a minute, 5 wrong codes per lockout.
MAILS_PER_MINUTE = 1
WRONG_CODES = 5


def _codes(c: GatewayContainer) -> Codes:
    return Codes(c.kv, c.settings.SECRET_KEY, "owner_transfer",
                 c.settings.OWNER_TRANSFER_TOKEN_EXPIRY_MINUTES * 60)


async def _owner_email(request: Request, user: ConsoleUser) -> str:
    """The acting owner's e-mail (Dify's NotOwnerError for anyone else)."""
    if user.role != "owner":
        raise NotOwner()
    account = await queries.account_summaries(get_container(request).engine,
                                              [user.account_id])
    return str(account[user.account_id]["email"])


@router.post("/workspaces/current/members/send-owner-transfer-confirm-email")
async def send_owner_transfer_code(request: Request, body: api.OwnerTransferMailRequest,
                                   user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    c = get_container(request)
    await limit_ip(c.kv, request.client.host if request.client else "unknown",
                   c.settings.EMAIL_SEND_IP_LIMIT_PER_MINUTE)
    email = await _owner_email(request, user)
    await Limit(c.kv, "owner_transfer_rate_limit", MAILS_PER_MINUTE, 60).use(
        email, OwnerTransferRateLimited())
    code, codes = new_code(), _codes(c)
    token = await codes.issue(email, code)
    await command_gateway(request).send(
        cmd.RequestOwnerTransferCode(
            workspace_id=user.tenant_id,
            language="zh-Hans" if body.language == "zh-Hans" else "en-US",
            sealed_params=seal_mail_params(c.settings.SECRET_KEY, {"code": code}),
            expiry_minutes=codes.ttl // 60),
        aggregate_id=user.tenant_id, tenant_id=user.tenant_id, actor_id=user.account_id,
        read_your_writes=False)
    return {"result": "success", "data": token}


@router.post("/workspaces/current/members/owner-transfer-check")
async def check_owner_transfer_code(request: Request, body: api.OwnerTransferCheckRequest,
                                    user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    c = get_container(request)
    email = await _owner_email(request, user)
    wrong_codes = Limit(c.kv, "owner_transfer_error_rate_limit", WRONG_CODES,
                        c.settings.OWNER_TRANSFER_LOCKOUT_DURATION)
    await wrong_codes.use(email, OwnerTransferLimited())  # before the check: no racing it
    codes = _codes(c)
    checked = await codes.check(email, body.code, body.token)
    await wrong_codes.clear(email)
    # The code's token is spent; the transfer takes a new one, good only for that.
    return {"is_valid": True, "email": checked.email,
            "token": await codes.issue(checked.email, body.code, phase=TRANSFER)}


@router.post("/workspaces/current/members/{member_id}/owner-transfer")
async def transfer_owner(request: Request, member_id: str, body: api.OwnerTransferRequest,
                         user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    email = await _owner_email(request, user)
    target = parse_id(member_id, MemberNotInTenant)
    if target == user.account_id:
        raise CannotTransferOwnerToSelf()
    spent = await _codes(get_container(request)).spend(TRANSFER, body.token)
    if spent.email != email:
        raise InvalidEmail()
    await command_gateway(request).send(
        cmd.TransferOwnership(workspace_id=user.tenant_id, account_id=target),
        aggregate_id=user.tenant_id, tenant_id=user.tenant_id, actor_id=user.account_id)
    return {"result": "success"}
