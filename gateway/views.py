"""Read-model rows rendered in Dify's response shapes."""

from __future__ import annotations

from datetime import datetime


def timestamp(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None
