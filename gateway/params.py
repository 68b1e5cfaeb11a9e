"""Query parameters the paged lists share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

# Beyond this a page is refused (400), as Dify's pagination does; unbounded, a page of 10^20
# would reach Postgres as an OFFSET beyond 64 bits.
MAX_PAGE = 99999
Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def without_empty_values(query_string: bytes) -> bytes:
    """`a=&b=1&c` -> `b=1`: an optional parameter sent empty is absent, as Dify reads it
    (its SDKs send `last_id=` and `pinned=` when unset)."""
    return b"&".join(pair for pair in query_string.split(b"&") if pair.partition(b"=")[2])
