"""A rendered mail as a MIME message: text and HTML alternatives, with its Message-ID."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

from adapters.mail.base import MailMessage


def mime_message(message: MailMessage, sender: str) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Message-ID"] = message.message_id
    mime["Date"] = formatdate(localtime=False)
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    return mime
