"""The embedded default transport (MAIL_TYPE=outbox): each mail is an `.eml` file in a
folder (MAIL_OUTBOX_DIR, default EDDY_DATA_DIR/outbox), named by its Message-ID, written
whole or not at all (a temporary file renamed). Sending a mail again rewrites its file, so
the outbox holds each mail once whatever happens."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from adapters.mail.base import MailMessage, MailServerUnavailable
from adapters.mail.mime import mime_message


class OutboxMailer:
    transport = "outbox"

    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    def path_of(self, message_id: str) -> Path:
        return self.folder / (re.sub(r"[^A-Za-z0-9@._-]", "", message_id) + ".eml")

    async def send(self, message: MailMessage) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:  # a full disk, a folder we may not write: worth retrying
            raise MailServerUnavailable(f"outbox {self.folder}: {exc}",
                                        "outbox_unavailable") from exc

    def _write(self, message: MailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path_of(message.message_id)
        partial = path.with_suffix(".eml.partial")
        partial.write_bytes(mime_message(message, self.sender).as_bytes())
        os.replace(partial, path)
