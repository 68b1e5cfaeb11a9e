"""The knowledge Service API's lookups of what a path names: each answers the row, or the
resource's 404 in Dify's shape when it is not there (or not the key's workspace's)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from gateway.auth import ApiKeyPrincipal
from gateway.deps import get_container, parse_id
from projections.knowledge import queries as kq
from schemas.errors import DatasetNotFound, DocumentNotFound, NotFound, SegmentNotFound


def _found(row: dict[str, Any] | None, missing: type[NotFound]) -> dict[str, Any]:
    if row is None:
        raise missing()
    return row


async def dataset_of(request: Request, key: ApiKeyPrincipal, dataset_id: str) -> dict[str, Any]:
    """The key's workspace's dataset the path names, else 404, dataset not found."""
    return _found(await kq.dataset(get_container(request).engine, key.tenant_id,
                                   parse_id(dataset_id, DatasetNotFound)), DatasetNotFound)


async def document_of(request: Request, dataset: dict[str, Any],
                      document_id: str) -> dict[str, Any]:
    """The dataset's document the path names, else 404, document not found."""
    return _found(await kq.document(get_container(request).engine, dataset["id"],
                                    parse_id(document_id, DocumentNotFound)), DocumentNotFound)


async def segment_of(request: Request, document: dict[str, Any],
                     segment_id: str) -> dict[str, Any]:
    """The document's segment the path names, else 404, segment not found."""
    target = parse_id(segment_id, SegmentNotFound)
    rows = await kq.segments_by_id(get_container(request).engine, [target])
    row = rows.get(target)
    if row is None or row["document_id"] != document["id"]:
        raise SegmentNotFound()
    return row
