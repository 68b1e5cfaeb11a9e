"""Read-model rows rendered in Dify's response shapes."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote


def timestamp(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266 / RFC 5987: an ASCII fallback for old clients, the real (UTF-8) name in
    `filename*`."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
