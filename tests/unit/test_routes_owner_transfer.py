"""Owner transfer over the console routes on the in-memory node: the owner confirms the
mailed code, then spends the confirmed token on the transfer (Dify's three steps); codes and
tokens single-use, never in plaintext in the store."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from tests.harness import Node, in_plaintext
from tests.invitations import (
    MEMBERS,
    current,
    join,
    mails_to,
    recorded,
    refused,
    sealed_params,
)

SEND = f"{MEMBERS}/send-owner-transfer-confirm-email"
CHECK = f"{MEMBERS}/owner-transfer-check"


async def test_the_owner_transfers_ownership_with_a_mailed_code(node: Node) -> None:
    owner = await node.setup_and_login()
    ada = await join(node, owner, "ada@example.com", "admin")
    ed = await join(node, owner, "ed@example.com", "editor")
    ids = {m["email"]: m["id"] for m in (await node.client.get(
        MEMBERS, headers=owner)).json()["accounts"]}

    await refused(node, "POST", SEND, 400, "not_owner",
                  "You are not the owner of the workspace.", headers=ada, json={})
    sent = await node.client.post(SEND, headers=owner, json={"language": "zh-Hans"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["result"] == "success"
    first = sent.json()["data"]
    [mail] = await mails_to(node, "owner@example.com")
    assert (mail.template, mail.language, mail.params) == (
        "owner_transfer_confirm", "zh-Hans",
        {"WorkspaceName": "Owner's Workspace", "expiry_minutes": 5})
    code = (await sealed_params(node, "owner@example.com", "owner_transfer_confirm"))["code"]
    assert len(code) == 6 and code.isdigit()
    # One code mail a minute.
    await refused(node, "POST", SEND, 429, "owner_transfer_rate_limit_exceeded", headers=owner,
                  json={})

    wrong = "000000" if code != "000000" else "111111"
    for body in ({"token": first}, {"code": code}, {"code": "", "token": first}):
        await refused(node, "POST", CHECK, 400, "invalid_param", headers=owner, json=body)
    await refused(node, "POST", CHECK, 400, "email_code_error", headers=owner,
                  json={"code": wrong, "token": first})
    await refused(node, "POST", CHECK, 400, "not_owner", headers=ada,
                  json={"code": code, "token": first})
    checked = await node.client.post(CHECK, headers=owner, json={"code": code, "token": first})
    assert checked.status_code == 200, checked.text
    answer: dict[str, Any] = checked.json()
    assert (answer["is_valid"], answer["email"]) == (True, "owner@example.com")
    confirmed = answer["token"]
    await refused(node, "POST", CHECK, 400, "invalid_or_expired_token", headers=owner,
                  json={"code": code, "token": first})  # spent

    def transfer(email: str) -> str:
        return f"{MEMBERS}/{ids[email]}/owner-transfer"

    await refused(node, "POST", transfer("ed@example.com"), 400, "invalid_param",
                  headers=owner, json={})
    await refused(node, "POST", f"{MEMBERS}/{uuid4()}/owner-transfer", 400,
                  "invalid_or_expired_token", headers=owner, json={"token": "not-a-token"})
    await refused(node, "POST", transfer("owner@example.com"), 400,
                  "cannot_transfer_owner_to_self", headers=owner, json={"token": confirmed})
    # The code's own token does not transfer: only the confirmed one.
    await refused(node, "POST", transfer("ed@example.com"), 400, "invalid_or_expired_token",
                  headers=owner, json={"token": first})
    moved = await node.client.post(transfer("ed@example.com"), headers=owner,
                                   json={"token": confirmed})
    assert (moved.status_code, moved.json()) == (200, {"result": "success"})
    assert (await current(node, ed))["role"] == "owner"
    assert (await current(node, owner))["role"] == "admin"
    assert [m.template for m in await mails_to(node, "ed@example.com")][-1] == \
        "owner_transfer_new_notify"
    old = (await mails_to(node, "owner@example.com"))[-1]
    assert (old.template, old.params) == ("owner_transfer_old_notify", {
        "WorkspaceName": "Owner's Workspace", "NewOwnerEmail": "ed@example.com"})
    # The confirmed token worked once; the old owner is an owner no more.
    await refused(node, "POST", transfer("ada@example.com"), 400, "not_owner",
                  headers=owner, json={"token": confirmed})
    events = [e.to_json() for e in await recorded(node)]
    for secret in (code, first, confirmed):
        assert not in_plaintext(secret, events)


async def test_wrong_codes_lock_the_owner_transfer_out(node: Node) -> None:
    owner = await node.setup_and_login()
    token = (await node.client.post(SEND, headers=owner, json={})).json()["data"]
    code = (await sealed_params(node, "owner@example.com", "owner_transfer_confirm"))["code"]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        await refused(node, "POST", CHECK, 400, "email_code_error", headers=owner,
                      json={"code": wrong, "token": token})
    # Locked out: even the right code is refused now.
    await refused(node, "POST", CHECK, 429, "owner_transfer_limit",
                  "Too many failed owner transfer attempts. Please try again in 24 hours.",
                  headers=owner, json={"code": code, "token": token})
