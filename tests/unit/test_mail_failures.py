"""What a failed mail records for the members list (MailDeliveryFailed.error): the kind of
failure only; the detail (the server's reply, its address, the login) stays in the log line
and the dead letter."""

from __future__ import annotations

from adapters.mail.base import MailRejected, MailServerUnavailable
from workers.mail.processor import MailUnrenderable, failure_category
from workers.runtime import PermanentFailure


def refused_for_good() -> PermanentFailure:
    """A 5xx as the processor dead-letters it: PermanentFailure from the mailer's error."""
    reply = "SMTP 535 b'5.7.8 Authentication failed for smtp-user@example.com'"
    try:
        try:
            raise MailRejected(reply, "smtp_rejected 535")
        except MailRejected as exc:
            raise PermanentFailure(str(exc)) from exc
    except PermanentFailure as failure:
        return failure


def test_a_failure_is_recorded_as_its_kind_never_the_servers_words() -> None:
    refused = refused_for_good()
    assert failure_category(refused) == "smtp_rejected 535"
    assert "smtp-user@example.com" in str(refused)  # kept for the dead letter
    unavailable = MailServerUnavailable("SMTP mail.internal:25: ConnectionRefusedError(111)",
                                        "smtp_unavailable")
    assert failure_category(unavailable) == "smtp_unavailable"
    assert failure_category(MailUnrenderable("mail invite_member cannot be rendered: "
                                             "SecretUnreadable()")) == "render_failed"
    assert failure_category(RuntimeError("a bug")) == "delivery_failed"
