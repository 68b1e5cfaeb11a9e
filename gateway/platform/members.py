"""Console members of the current workspace and invitations (Dify's api/controllers/console/
workspace/members.py and auth/activate.py).

An invitation's activation token is made here and lives only in the key-value store, under
its sha256 and for INVITE_EXPIRY_HOURS; the command carries the activation link sealed for
the mail processor (gateway.mail), so the token never reaches a topic, an event or a log.
Activating takes the token (single use)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import auth
from gateway.auth import AdminOrOwner, ConsoleUser, CurrentUser, Owner
from gateway.deps import command_gateway, get_container, maybe_uuid, parse_id
from gateway.mail import seal_mail_params
from gateway.platform.views import member_view
from projections.mail.queries import mail_status_of
from projections.platform import queries
from schemas.errors import (
    AccountAlreadyInTenant,
    AlreadyActivated,
    EddyError,
    InvalidRole,
    MemberNotInTenant,
)
from schemas.platform import api
from schemas.platform import commands as cmd
from schemas.platform.naming import account_id_for
from schemas.platform.roles import ASSIGNABLE

router = APIRouter(prefix="/console/api")


def _invitation_key(token: str) -> str:
    return "member_invite:" + hashlib.sha256(token.encode()).hexdigest()


def _console_url(request: Request) -> str:
    return get_container(request).settings.CONSOLE_WEB_URL.rstrip("/")


@router.get("/workspaces/current/members")
async def list_members(request: Request, user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    return await _accounts(get_container(request).engine, user.tenant_id)


@router.get("/workspaces/current/dataset-operators")
async def list_dataset_operators(request: Request,
                                 user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    return await _accounts(get_container(request).engine, user.tenant_id,
                           role="dataset_operator")


async def _accounts(engine: AsyncEngine, workspace_id: UUID,
                    role: str | None = None) -> dict[str, Any]:
    """The members (of `role`), each with how its invitation's mail is doing."""
    rows = await queries.list_members(engine, workspace_id, role=role)
    mails = await mail_status_of(engine, [r["mail_id"] for r in rows])
    return {"accounts": [member_view(r, mails.get(r["mail_id"])) for r in rows]}


@router.post("/workspaces/current/members/invite-email", status_code=201)
async def invite_members(request: Request, body: api.InviteMembersRequest,
                         user: ConsoleUser = AdminOrOwner) -> dict[str, Any]:
    # Checked here as well as by the workspace: a bad role refuses the whole request
    # (Dify's 400), not each e-mail's invitation as a failed result.
    if body.role not in ASSIGNABLE:
        raise InvalidRole()
    emails = list(dict.fromkeys(e.lower() for e in body.emails))  # each once, as stored
    language = body.language or "en-US"
    return {"result": "success",
            "invitation_results": [await _invite(request, user, email, body.role, language)
                                   for email in emails],
            "tenant_id": str(user.tenant_id)}


async def _keep_invitation(request: Request, token: str, account_id: str, email: str,
                           workspace_id: UUID) -> None:
    c = get_container(request)
    await c.kv.set(_invitation_key(token), orjson.dumps({
        "account_id": account_id, "email": email, "workspace_id": str(workspace_id)}).decode(),
        ttl=c.settings.INVITE_EXPIRY_HOURS * 3600)


async def _invite(request: Request, user: ConsoleUser, email: str, role: str,
                  language: str) -> dict[str, Any]:
    """One e-mail's invitation, as Dify reports it: a failure is a result, not an error."""
    c = get_container(request)
    token = secrets.token_urlsafe(32)
    activation = f"{_console_url(request)}/activate?email={quote(email)}&token={token}"
    signin = f"{_console_url(request)}/signin"
    # Kept before the command, for the account the e-mail names: the mail may go out as
    # soon as the command is accepted.
    await _keep_invitation(request, token, str(account_id_for(email)), email, user.tenant_id)
    try:
        accepted = await command_gateway(request).send(
            cmd.InviteMember(workspace_id=user.tenant_id, email=email, role=role,
                             language=language, signin_url=signin,
                             sealed_activation=seal_mail_params(c.settings.SECRET_KEY,
                                                                {"url": activation})),
            aggregate_id=user.tenant_id, tenant_id=user.tenant_id, actor_id=user.account_id)
    except AccountAlreadyInTenant:
        await c.kv.delete(_invitation_key(token))
        return {"status": "success", "email": email, "url": signin}
    except EddyError as exc:
        await c.kv.delete(_invitation_key(token))
        return {"status": "failed", "email": email, "message": exc.message}
    if not accepted.result.get("activation"):  # an active account: it signs in
        await c.kv.delete(_invitation_key(token))
        return {"status": "success", "email": email, "url": signin}
    # Kept again for the account the command invited: another may hold the address now
    # (its e-mail changed, `eddy reset-email`).
    await _keep_invitation(request, token, str(accepted.result["account_id"]), email,
                           user.tenant_id)
    return {"status": "success", "email": email, "url": activation}


@router.put("/workspaces/current/members/{member_id}/update-role")
async def update_member_role(request: Request, member_id: str,
                             body: api.UpdateMemberRoleRequest,
                             user: ConsoleUser = Owner) -> dict[str, Any]:
    target = parse_id(member_id, MemberNotInTenant)
    await command_gateway(request).send(
        cmd.UpdateMemberRole(workspace_id=user.tenant_id, account_id=target, role=body.role),
        aggregate_id=user.tenant_id, tenant_id=user.tenant_id, actor_id=user.account_id)
    return {"result": "success"}


@router.delete("/workspaces/current/members/{member_id}")
async def remove_member(request: Request, member_id: str,
                        user: ConsoleUser = Owner) -> dict[str, Any]:
    target = parse_id(member_id, MemberNotInTenant)
    await command_gateway(request).send(
        cmd.RemoveMember(workspace_id=user.tenant_id, account_id=target),
        aggregate_id=user.tenant_id, tenant_id=user.tenant_id, actor_id=user.account_id)
    return {"result": "success", "tenant_id": str(user.tenant_id)}


# --- activation (public: the invitee has no session yet) --------------------------------------


@dataclass(frozen=True)
class Invitation:
    key: str
    account_id: UUID
    workspace_id: UUID
    email: str
    workspace_name: str


async def _invitation(request: Request, token: str, workspace_id: str | None,
                      email: str | None) -> Invitation | None:
    """The invitation the token opens, while its account is pending and a member there;
    the workspace and e-mail, when the link names them, must be its own."""
    c = get_container(request)
    key = _invitation_key(token)
    stored = await c.kv.get(key)
    if stored is None:
        return None
    data = orjson.loads(stored)
    if (workspace_id is not None and maybe_uuid(workspace_id) != UUID(data["workspace_id"])) \
            or (email is not None and email.strip().lower() != data["email"]):
        return None
    account_id, workspace = UUID(data["account_id"]), UUID(data["workspace_id"])
    pending = await queries.pending_member(c.engine, workspace, account_id)
    if pending is None:
        return None
    return Invitation(key, account_id, workspace, pending["email"], pending["workspace_name"])


@router.get("/activate/check")
async def check_activation(
    request: Request,
    token: Annotated[str, Query(min_length=1, max_length=255)],
    workspace_id: Annotated[str | None, Query(max_length=64)] = None,
    email: Annotated[str | None, Query(max_length=255)] = None,
) -> dict[str, Any]:
    invitation = await _invitation(request, token, workspace_id, email)
    if invitation is None:
        return {"is_valid": False}
    return {"is_valid": True, "data": {"workspace_name": invitation.workspace_name,
                                       "workspace_id": str(invitation.workspace_id),
                                       "email": invitation.email}}


@router.post("/activate")
async def activate(request: Request, body: api.ActivateRequest) -> dict[str, Any]:
    c = get_container(request)
    invitation = await _invitation(request, body.token, body.workspace_id, body.email)
    # Taken, not read: of two activations with one token, one gets it.
    if invitation is None or await c.kv.take(invitation.key) is None:
        raise AlreadyActivated()
    credentials_id = None
    if body.password is not None:
        credentials_id = await auth.store_credentials(c.engine, invitation.account_id,
                                                      body.password)
    try:
        await command_gateway(request).send(
            cmd.ActivateAccount(account_id=invitation.account_id, name=body.name,
                                interface_language=body.interface_language,
                                timezone=body.timezone, credentials_id=credentials_id),
            aggregate_id=invitation.account_id, tenant_id=invitation.workspace_id,
            actor_id=invitation.account_id)
    except EddyError:
        if credentials_id is not None:
            await auth.discard_credentials(c.engine, credentials_id)
        raise
    return {"result": "success", "data": await auth.Tokens(request).issue(invitation.account_id)}
