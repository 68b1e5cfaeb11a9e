"""The mail context: mail the other contexts ask for (`commands.mail.aggregates.
request_mail`), sent once each by the mail processor, a consumer group (what Dify's `mail`
queue did)."""

from __future__ import annotations

from commands.mail import aggregates
from contexts.manifest import ContextManifest, payloads_in
from events.routing import Route
from projections.mail import projectors
from projections.tables import PROJECTION_NAME
from schemas.mail import events
from workers.declarations import WorkTopic
from workers.mail.processor import outbox_processor

# Every mail asked for (keyed by its Mail aggregate: one mail's messages in order).
OUTBOX = WorkTopic("mail.outbox", role="outbox", processor=outbox_processor,
                   routes=[Route([events.MailRequested])])

MAIL = ContextManifest(
    name="mail",
    aggregates=[aggregates.Mail],
    events=payloads_in(events),
    upcasters={},
    handlers=[],
    projectors={PROJECTION_NAME: [projectors.PROJECTORS]},
    work=[OUTBOX],
)
