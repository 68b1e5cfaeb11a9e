"""Knowledge Service API: tags, and their bindings to datasets.

Included before the datasets router: `/v1/datasets/tags` must not be taken for a
dataset id by `/v1/datasets/{dataset_id}`.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response

from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import get_container, maybe_uuid, parse_id
from gateway.knowledge.deps import send
from gateway.knowledge.lookups import dataset_of
from gateway.knowledge.views import tag_view
from projections.knowledge import meta_queries as kmq
from schemas.errors import TagNotFound
from schemas.knowledge import api
from schemas.knowledge import commands as cmd

router = APIRouter(prefix="/v1/datasets")


async def _tag(request: Request, key: ApiKeyPrincipal, tag_id: UUID) -> dict[str, Any]:
    row = await kmq.tag(get_container(request).engine, key.tenant_id, tag_id)
    if row is None:
        raise TagNotFound()
    return row


@router.post("/tags")
async def create_tag(request: Request, body: api.CreateTagRequest,
                     key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    tag_id = uuid4()
    await send(request, key, cmd.CreateTag(tag_id=tag_id, name=body.name), tag_id)
    return tag_view(await _tag(request, key, tag_id))


@router.get("/tags")
async def list_tags(request: Request, key: ApiKeyPrincipal = DatasetKey,
                    keyword: Annotated[str | None, Query(max_length=50)] = None,
                    ) -> list[dict[str, Any]]:
    rows = await kmq.list_tags(get_container(request).engine, key.tenant_id, keyword)
    return [tag_view(r) for r in rows]


@router.patch("/tags")
async def update_tag(request: Request, body: api.UpdateTagRequest,
                     key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    tag = await _tag(request, key, parse_id(body.tag_id, TagNotFound))
    await send(request, key, cmd.RenameTag(tag_id=tag["id"], name=body.name), tag["id"])
    return tag_view(await _tag(request, key, tag["id"]))


@router.delete("/tags", status_code=204)
async def delete_tag(request: Request, body: api.DeleteTagRequest,
                     key: ApiKeyPrincipal = DatasetKey) -> Response:
    tag = await _tag(request, key, parse_id(body.tag_id, TagNotFound))
    await send(request, key, cmd.DeleteTag(tag_id=tag["id"]), tag["id"])
    return Response(status_code=204)


def _tag_ids(values: list[str]) -> list[UUID]:
    # Unknown (or malformed) tag ids are ignored, as Dify's spec says.
    return list(dict.fromkeys(t for t in (maybe_uuid(v) for v in values) if t))


@router.post("/tags/binding", status_code=204)
async def bind_tags(request: Request, body: api.TagBindingRequest,
                    key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await dataset_of(request, key, body.target_id)
    if tag_ids := _tag_ids(body.tag_ids):
        # Keyed by the dataset: one dataset's bindings change in order.
        await send(request, key, cmd.BindTags(target_id=dataset["id"], tag_ids=tag_ids),
                    dataset["id"])
    return Response(status_code=204)


@router.post("/tags/unbinding", status_code=204)
async def unbind_tags(request: Request, body: api.TagUnbindingRequest,
                      key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await dataset_of(request, key, body.target_id)
    if tag_ids := _tag_ids(body.all_tag_ids()):
        await send(request, key, cmd.UnbindTags(target_id=dataset["id"], tag_ids=tag_ids),
                    dataset["id"])
    return Response(status_code=204)


@router.get("/{dataset_id}/tags")
async def dataset_tags(request: Request, dataset_id: str,
                       key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await dataset_of(request, key, dataset_id)
    rows = await kmq.dataset_tags(get_container(request).engine, dataset["id"])
    return {"data": [{"id": str(r["id"]), "name": r["name"]} for r in rows],
            "total": len(rows)}
