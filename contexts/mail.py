"""The mail context: mail the other contexts ask for (`commands.mail.aggregates.
request_mail`), sent once each by the mail processor, a consumer group (what Dify's `mail`
queue did)."""

from __future__ import annotations

from commands.mail import aggregates
from contexts.manifest import ContextManifest, payloads_in
from schemas.mail import events

MAIL = ContextManifest(
    name="mail",
    aggregates=[aggregates.Mail],
    events=payloads_in(events),
    upcasters={},
    handlers=[],
    projectors={},
)
