"""The mail context's projector: each mail's delivery status, read back through the query
the members list uses (`mail_status_of`)."""

from __future__ import annotations

from uuid import uuid4

from projections.mail.queries import mail_status_of
from projections.mail.tables import mails
from schemas.mail import events as mev
from tests.unit.projectors.harness import World, exercises, stored


def requested(to: str = "ann@example.com") -> mev.MailRequested:
    return mev.MailRequested(template="invite_member", to=to, params={"workspace_name": "W"},
                             sealed_params="sealed")


@exercises(mev.MailRequested, mev.MailSent, mev.MailDeliveryFailed)
async def test_a_mail_is_queued_then_failed_then_sent_by_a_replay(world: World) -> None:
    mail_id, other = uuid4(), uuid4()
    asked = await world.emit("Mail", mail_id, requested())
    await world.emit("Mail", other, requested("bob@example.com"))
    status = await mail_status_of(world.engine, [mail_id, None, uuid4()])
    assert status == {mail_id: {"status": "queued", "error": None,
                                "requested_at": stored(asked), "sent_at": None}}

    await world.emit("Mail", mail_id, mev.MailDeliveryFailed(
        error="SMTP 127.0.0.1:25: ConnectionRefusedError(111, 'Connection refused')",
        permanent=False))
    failed = (await mail_status_of(world.engine, [mail_id]))[mail_id]
    assert (failed["status"], failed["sent_at"]) == ("failed", None)
    assert "Connection refused" in failed["error"]

    sent = await world.emit("Mail", mail_id, mev.MailSent(message_id="<m@x>",
                                                           transport="smtp"))
    both = await mail_status_of(world.engine, [mail_id, other])
    assert both[mail_id] == {"status": "sent", "error": None, "requested_at": stored(asked),
                             "sent_at": stored(sent)}
    assert both[other]["status"] == "queued"
    assert await mail_status_of(world.engine, []) == {}
    row = await world.one(mails, mail_id)
    assert (row["tenant_id"], row["template"], row["recipient"]) == (
        world.tenant, "invite_member", "ann@example.com")
