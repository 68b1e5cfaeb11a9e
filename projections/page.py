"""One page of a listing query, with the total the API reports (`has_more`, `total`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
