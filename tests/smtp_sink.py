"""An SMTP server on a loopback port that keeps what it receives (aiosmtpd, in a thread of
its own), for tests of mail sent by Eddy: the `smtp_sink` fixture (tests/conftest.py).

    async def test_x(smtp_sink: SmtpSink, ...):
        settings = node_settings(..., **smtp_sink.settings())   # MAIL_TYPE=smtp at the sink
        ...
        [mail] = await smtp_sink.wait_for(1)         # the first mail, once it arrived
        assert mail.to == "ann@example.com" and "/activate?token=" in mail.text
        link = mail.link("/activate")                # the first URL in its text with that path

`stop()` takes the server down (connections refused), `start()` brings it back on the same
port; `refuse(code)` makes it refuse every mail with that SMTP code (550: for good, 451:
try again later) until `refuse(None)`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.embedded.ports import free_port


@dataclass(frozen=True)
class SinkMessage:
    """One mail as the server received it."""

    sender: str  # the envelope's MAIL FROM
    recipients: list[str]  # the envelope's RCPT TO
    message: EmailMessage

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def _part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        return str(part.get_content())  # type: ignore[attr-defined]

    @property
    def text(self) -> str:
        return self._part("plain")

    @property
    def html(self) -> str:
        return self._part("html")

    def link(self, path: str) -> str:
        """The first URL in the text part whose path starts with `path`."""
        found = re.search(r"https?://[^\s\"'<>]*" + re.escape(path) + r"[^\s\"'<>]*", self.text)
        assert found, f"no {path} link in {self.text!r}"
        return found.group(0)


@dataclass
class SmtpSink:
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    messages: list[SinkMessage] = field(default_factory=list)
    refusal: int | None = None
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refusal is not None:
            return f"{self.refusal} refused by the test's SMTP sink"
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        # lines end in CRLF on the wire: read as the sender wrote them
        parsed = message_from_bytes(content.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(SinkMessage(str(envelope.mail_from),
                                             list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings sending Eddy's mail here, retrying quickly (node_settings overrides)."""
        return {"MAIL_TYPE": "smtp", "SMTP_SERVER": self.host, "SMTP_PORT": self.port,
                "SMTP_USE_TLS": False, "MAIL_DEFAULT_SEND_FROM": "Dify <no-reply@eddy.test>",
                "MAIL_RETRY_BACKOFF_SECONDS": 0.05,
                **overrides}

    def start(self) -> None:
        assert self._controller is None, "already serving"
        # The server's own log has each line of each mail at DEBUG: it is the recipient's
        # side, not Eddy's, and must not read as Eddy logging what it sent.
        logging.getLogger("mail.log").setLevel(logging.INFO)
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse(self, code: int | None) -> None:
        self.refusal = code

    def received(self) -> list[SinkMessage]:
        with self._lock:
            return list(self.messages)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[SinkMessage]:
        """The mails received once there are at least `count` of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(received := self.received()) < count:
            if loop.time() > deadline:
                raise AssertionError(f"{len(received)} mails within {timeout}s, "
                                     f"expected {count}")
            await asyncio.sleep(0.05)
        return received
