"""Event payloads of the mail context (one `Mail` aggregate per mail asked for)."""

from __future__ import annotations

from typing import Any, Literal

from schemas.base import EventPayload

# Dify's mail templates (api/templates/*_mail_template_<language>.html), by purpose.
MailTemplate = Literal[
    "invite_member", "reset_password", "email_code_login", "owner_transfer_confirm",
    "owner_transfer_old_notify", "owner_transfer_new_notify", "change_email",
    "queue_monitor_alert",
]


class MailRequested(EventPayload):
    """A mail to send. `params` fill the template; a secret one (a code, an activation
    link's token) goes only in `sealed_params`: a JSON object sealed with the key of
    purpose `mail params` (adapters.secrets), opened by the mail processor when it renders.
    Never in plaintext on a topic, in a dead letter or in `eddy events show`."""

    template: MailTemplate
    to: str
    language: str = "en-US"
    params: dict[str, Any] = {}
    sealed_params: str | None = None


class MailSent(EventPayload):
    """Handed to the mail server (or written to the outbox folder) under this Message-ID;
    recorded before the message is acknowledged, so a redelivery sends nothing."""

    message_id: str
    transport: str  # "smtp" | "outbox"


class MailDeliveryFailed(EventPayload):
    """The mail went to the dead letters (the server refused it for good, or stayed down
    past the retries). A replay of the dead letter may still send it (MailSent follows)."""

    error: str  # the kind ("smtp_rejected 550"), shown to members: never the server's words
    permanent: bool
