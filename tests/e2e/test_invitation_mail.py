"""An invitation over the console routes, its mail through a real SMTP server (the aiosmtpd
sink): exactly one mail, whose link activates the account; the members list shows how each
invitation's mail is doing, a refused one as failed with the server's answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.harness import Node, eventually
from tests.smtp_sink import SmtpSink

API = "/console/api"
MEMBERS = f"{API}/workspaces/current/members"


async def invite(node: Node, auth: dict[str, str], email: str) -> Any:
    response = await node.client.post(f"{MEMBERS}/invite-email", headers=auth, json={
        "emails": [email], "role": "editor", "language": "en-US"})
    assert response.status_code == 201, response.text
    return response.json()


async def invitation_mail(node: Node, auth: dict[str, str], email: str,
                          status: str) -> dict[str, Any] | None:
    members = (await node.client.get(MEMBERS, headers=auth)).json()["accounts"]
    [member] = [m for m in members if m["email"] == email]
    mail = member["invitation_mail"]
    return mail if mail is not None and mail["status"] == status else None


async def test_an_invitation_mails_one_link_that_activates_the_account(
        mail_node: Node, smtp_sink: SmtpSink) -> None:
    node = mail_node
    owner = await node.setup_and_login()
    answer = await invite(node, owner, "newbie@example.com")
    [mail] = await smtp_sink.wait_for(1)
    assert mail.recipients == ["newbie@example.com"]
    assert mail.subject == "Join Dify Workspace Now"
    assert "Owner" in mail.text and "Owner's Workspace" in mail.text
    link = mail.link("/activate")
    assert link == answer["invitation_results"][0]["url"]
    sent = await eventually(lambda: invitation_mail(node, owner, "newbie@example.com", "sent"))
    assert sent["sent_at"] >= sent["requested_at"] and sent["error"] is None

    token = parse_qs(urlsplit(link).query)["token"][0]
    activated = await node.client.post(f"{API}/activate", json={
        "email": "newbie@example.com", "token": token, "name": "Nina",
        "interface_language": "en-US", "timezone": "UTC", "password": "passw0rd1"})
    assert activated.status_code == 200, activated.text
    await node.console_login("newbie@example.com", "passw0rd1")
    assert len(smtp_sink.received()) == 1


async def test_a_refused_invitation_shows_failed_on_the_members_list(
        mail_node: Node, smtp_sink: SmtpSink) -> None:
    node = mail_node
    owner = await node.setup_and_login()
    smtp_sink.refuse(550)
    await invite(node, owner, "nobody@example.com")
    failed = await eventually(
        lambda: invitation_mail(node, owner, "nobody@example.com", "failed"))
    assert failed["error"] == "smtp_rejected 550" and failed["sent_at"] is None
    assert smtp_sink.received() == []
