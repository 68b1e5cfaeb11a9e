"""Invitations for tests: invite over the console, and the activation link (or code) a
command mailed, read where it travels (sealed in the MailRequested it recorded) and opened as
the mail processor opens it."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from adapters.secrets import unseal
from schemas.mail.events import MailRequested
from schemas.mail.naming import MAIL_PARAMS_PURPOSE
from tests.harness import Node

API = "/console/api"
MEMBERS = f"{API}/workspaces/current/members"


async def recorded(node: Node) -> list[Any]:
    """Every event in the node's store (the Postgres store reads synchronously)."""
    store = node.container.store
    return await asyncio.to_thread(lambda: store.read_from(0, store.max_position()))


async def mails_to(node: Node, email: str) -> list[MailRequested]:
    return [e.payload for e in await recorded(node)
            if isinstance(e.payload, MailRequested) and e.payload.to == email]


async def sealed_params(node: Node, email: str, template: str) -> dict[str, Any]:
    """The secret params (a link, a code) of the newest mail of `template` to `email`."""
    sealed = [m for m in await mails_to(node, email) if m.template == template][-1] \
        .sealed_params
    assert sealed is not None
    opened = orjson.loads(unseal(node.container.settings.SECRET_KEY, MAIL_PARAMS_PURPOSE,
                                 sealed))
    assert isinstance(opened, dict)
    return opened


async def activation_link(node: Node, email: str) -> str:
    """The link of the newest invitation mail to `email`."""
    return str((await sealed_params(node, email, "invite_member"))["url"])


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def invite(node: Node, auth: dict[str, str], *emails: str, role: str = "editor",
                 language: str | None = None) -> Any:
    response = await node.client.post(f"{MEMBERS}/invite-email", headers=auth, json={
        "emails": list(emails), "role": role, "language": language})
    assert response.status_code == 201, response.text
    return response.json()


async def join(node: Node, auth: dict[str, str], email: str, role: str,
               password: str = "passw0rd1", timezone: str = "UTC") -> dict[str, str]:
    """An invited account that activated with a password: its console auth headers."""
    await invite(node, auth, email, role=role)
    activated = await node.client.post(f"{API}/activate", json={
        "email": email, "token": token_of(await activation_link(node, email)),
        "name": email.split("@")[0].title(), "interface_language": "en-US",
        "timezone": timezone, "password": password})
    assert activated.status_code == 200, activated.text
    return {"Authorization": f"Bearer {activated.json()['data']['access_token']}"}


async def current(node: Node, auth: dict[str, str]) -> Any:
    """The workspace the console works in, as its member sees it."""
    response = await node.client.get(f"{API}/workspaces/current", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def refused(node: Node, method: str, path: str, status: int, code: str,
                  message: str | None = None, **kwargs: Any) -> None:
    """Answered with Dify's error shape, and nothing recorded (the mail processor's record of
    an earlier mail's delivery may come at any time)."""
    before = await decisions(node)
    response = await node.client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["code"], body["status"]) == (code, status)
    if message is not None:
        assert body["message"] == message
    assert await decisions(node) == before


async def decisions(node: Node) -> list[str]:
    return [e.type for e in await recorded(node)
            if e.type not in ("MailSent", "MailDeliveryFailed")]
