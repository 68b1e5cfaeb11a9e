"""Annotations (Service API /apps/annotations) and annotation reply
(/apps/annotation-reply/{action}): an app key sees only its app's annotations. Enabling or
disabling reply is a job the annotation worker runs; its status is read back by id."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response

from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.deps import command_gateway, get_container, maybe_uuid, parse_id
from gateway.params import Page
from gateway.platform.service import app_of_key
from gateway.views import timestamp
from projections.conversation import queries
from schemas.base import CommandPayload
from schemas.conversation import api
from schemas.conversation import commands as cmd
from schemas.conversation.naming import annotation_set_id_for
from schemas.errors import AnnotationJobNotFound, AnnotationNotFound

router = APIRouter(prefix="/v1")
Action = Literal["enable", "disable"]
MAX_LIMIT = 100  # Dify caps larger pages


def annotation_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "question": row["question"], "answer": row["answer"],
            "hit_count": row["hit_count"], "created_at": timestamp(row["created_at"])}


async def _send(request: Request, key: ApiKeyPrincipal, app_id: UUID,
                payload: CommandPayload) -> None:
    await command_gateway(request).send(payload, aggregate_id=annotation_set_id_for(app_id),
                                        tenant_id=key.tenant_id, actor_id=key.actor_id)


async def _annotation(request: Request, app_id: UUID, annotation_id: UUID) -> dict[str, Any]:
    row = await queries.annotation(get_container(request).engine, app_id, annotation_id)
    assert row is not None  # projected before the answer (read-your-writes)
    return annotation_view(row)


@router.post("/apps/annotations", status_code=201)
async def create(request: Request, body: api.AnnotationRequest,
                 key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await app_of_key(request, key)
    annotation_id = uuid4()
    await _send(request, key, app["id"], cmd.CreateAnnotation(
        app_id=app["id"], annotation_id=annotation_id, question=body.question,
        answer=body.answer))
    return await _annotation(request, app["id"], annotation_id)


@router.get("/apps/annotations")
async def list_annotations(request: Request, key: ApiKeyPrincipal = AppKey,
                           page: Page = 1,
                           limit: Annotated[int, Query(ge=1)] = 20,
                           keyword: str = "") -> dict[str, Any]:
    app = await app_of_key(request, key)
    limit = min(limit, MAX_LIMIT)
    rows, total = await queries.list_annotations(get_container(request).engine, app["id"],
                                                 keyword.strip(), page, limit)
    return {"data": [annotation_view(r) for r in rows], "has_more": page * limit < total,
            "limit": limit, "total": total, "page": page}


@router.put("/apps/annotations/{annotation_id}")
async def update(request: Request, annotation_id: str, body: api.AnnotationRequest,
                 key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await app_of_key(request, key)
    target = parse_id(annotation_id, AnnotationNotFound)
    await _send(request, key, app["id"], cmd.UpdateAnnotation(
        app_id=app["id"], annotation_id=target, question=body.question, answer=body.answer))
    return await _annotation(request, app["id"], target)


@router.delete("/apps/annotations/{annotation_id}", status_code=204)
async def delete(request: Request, annotation_id: str,
                 key: ApiKeyPrincipal = AppKey) -> Response:
    app = await app_of_key(request, key)
    target = parse_id(annotation_id, AnnotationNotFound)
    await _send(request, key, app["id"], cmd.DeleteAnnotation(app_id=app["id"],
                                                              annotation_id=target))
    return Response(status_code=204)


@router.post("/apps/annotation-reply/{action}")
async def configure_reply(request: Request, action: Action, body: api.AnnotationReplyRequest,
                          key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await app_of_key(request, key)
    job_id = uuid4()
    await _send(request, key, app["id"], cmd.ConfigureAnnotationReply(
        app_id=app["id"], job_id=job_id, action=action, score_threshold=body.score_threshold,
        embedding_provider_name=body.embedding_provider_name,
        embedding_model_name=body.embedding_model_name))
    return {"job_id": str(job_id), "job_status": "waiting"}


@router.get("/apps/annotation-reply/{action}/status/{job_id}")
async def reply_status(request: Request, action: Action, job_id: str,
                       key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await app_of_key(request, key)
    target = maybe_uuid(job_id)
    job = await queries.annotation_reply_job(get_container(request).engine, app["id"], action,
                                             target) if target else None
    if job is None:
        raise AnnotationJobNotFound()
    return {"job_id": str(job["id"]), "job_status": job["status"], "error_msg": job["error"]}
