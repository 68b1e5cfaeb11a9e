"""A document's processing: its indexing status (Service API) and the console's pause,
resume, retry and reindex (Dify's console paths; not in the Service API)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response

from gateway.auth import ApiKeyPrincipal, ConsoleUser, DatasetEditor, DatasetKey
from gateway.deps import command_gateway, get_container, parse_id
from gateway.knowledge.lookups import dataset_of
from gateway.knowledge.views import indexing_status_view
from projections.knowledge import queries as kq
from schemas.errors import BadRequest, DatasetNotFound, DocumentNotFound
from schemas.knowledge import api
from schemas.knowledge import commands as cmd

router = APIRouter(prefix="/v1/datasets")
console_router = APIRouter(prefix="/console/api/datasets")


@router.get("/{dataset_id}/documents/{batch}/indexing-status")
async def indexing_status(request: Request, dataset_id: str, batch: str,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await dataset_of(request, key, dataset_id)
    rows = await kq.documents_in_batch(get_container(request).engine, dataset["id"], batch)
    if not rows:
        raise DocumentNotFound("Documents not found.")
    return {"data": [indexing_status_view(r) for r in rows]}


# --- console: pause, resume, retry, reindex ---------------------------------------------


async def _workspace_dataset(request: Request, user: ConsoleUser,
                             dataset_id: str) -> dict[str, Any]:
    dataset = await kq.dataset(get_container(request).engine, user.tenant_id,
                               parse_id(dataset_id, DatasetNotFound))
    if dataset is None:
        raise DatasetNotFound()
    return dataset


async def _control(request: Request, user: ConsoleUser, dataset_id: str,
                   document_ids: list[UUID], action: str) -> None:
    dataset = await _workspace_dataset(request, user, dataset_id)
    await command_gateway(request).send(
        cmd.ControlDocumentIndexing(dataset_id=dataset["id"], document_ids=document_ids,
                                    action=action),  # type: ignore[arg-type]
        aggregate_id=document_ids[0] if len(document_ids) == 1 else dataset["id"],
        tenant_id=user.tenant_id, actor_id=user.account_id)


@console_router.patch("/{dataset_id}/documents/{document_id}/processing/{action}")
async def pause_or_resume(request: Request, dataset_id: str, document_id: str, action: str,
                          user: ConsoleUser = DatasetEditor) -> dict[str, str]:
    if action not in ("pause", "resume"):
        raise BadRequest(f"Invalid action {action!r}.")
    await _control(request, user, dataset_id, [parse_id(document_id, DocumentNotFound)], action)
    return {"result": "success"}


@console_router.post("/{dataset_id}/retry", status_code=204)
async def retry(request: Request, dataset_id: str, body: api.DocumentIdsRequest,
                user: ConsoleUser = DatasetEditor) -> Response:
    """Retry failed documents (Dify's DocumentRetryApi)."""
    await _control(request, user, dataset_id, body.document_ids, "retry")
    return Response(status_code=204)


@console_router.post("/{dataset_id}/retry-failed", status_code=204)
async def retry_all_failed(request: Request, dataset_id: str,
                           user: ConsoleUser = DatasetEditor) -> Response:
    """Every document of the dataset that ended in error gets a new attempt."""
    # The workspace's dataset first: another's is not found, failed documents or not.
    dataset = await _workspace_dataset(request, user, dataset_id)
    failed = await kq.list_documents(get_container(request).engine, dataset["id"], page=1,
                                     limit=10_000, keyword=None, status="error")
    if failed.items:
        await _control(request, user, dataset_id, [d["id"] for d in failed.items], "retry")
    return Response(status_code=204)


@console_router.post("/{dataset_id}/documents/{document_id}/reindex", status_code=204)
async def reindex(request: Request, dataset_id: str, document_id: str,
                  user: ConsoleUser = DatasetEditor) -> Response:
    """Index the document again from its source (e.g. after editing its segments)."""
    await _control(request, user, dataset_id, [parse_id(document_id, DocumentNotFound)],
                   "reindex")
    return Response(status_code=204)
