"""Knowledge Service API: documents of a dataset, created or replaced by text or file."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile as StarletteUploadFile

from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import get_container
from gateway.knowledge.deps import LimitParam, PageParam, check_length, page_size, send
from gateway.knowledge.lookups import dataset_of, document_of
from gateway.knowledge.views import document_detail_view, document_view
from gateway.uploads import one_file, read_limited
from indexing.extract import SUPPORTED_EXTENSIONS
from indexing.split import ProcessRule
from projections.knowledge import queries as kq
from schemas.errors import BadRequest, EddyError, FileTooLarge, InvalidMetadata, UnsupportedFileType
from schemas.knowledge import api
from schemas.knowledge import commands as cmd
from schemas.knowledge.events import SourceFile
from schemas.knowledge.naming import document_prefix

router = APIRouter(prefix="/v1/datasets")


def _process_rule(raw: dict[str, Any] | None, doc_form: str) -> dict[str, Any]:
    try:
        rule = ProcessRule.from_dify(raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if doc_form == "qa_model":
        raise BadRequest("doc_form qa_model needs an LLM to write the Q&A pairs; "
                         "use text_model or hierarchical_model.")
    if (doc_form == "hierarchical_model") != (rule.mode == "hierarchical"):
        raise BadRequest("doc_form hierarchical_model goes with process_rule mode hierarchical.")
    return rule.to_dict()


def _batch() -> str:
    return time.strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**6):06d}"


def _safe_filename(name: str) -> str:
    return re.sub(r"[^\w.\- ]", "_", name).strip() or "file"


def _check_file(name: str, size: int, limit_mb: int) -> str:
    extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFileType(
            f"File type {extension or '(none)'} not allowed; supported: "
            f"{', '.join(sorted(SUPPORTED_EXTENSIONS))}.")
    if size > limit_mb * 1024 * 1024:
        raise FileTooLarge(f"File size exceeded. {size} > {limit_mb} MB.")
    return extension.lstrip(".")


async def _create_document(request: Request, key: ApiKeyPrincipal, dataset: dict[str, Any],
                           settings: api.DocumentSettings, name: str, filename: str,
                           data: bytes, mime_type: str | None) -> dict[str, Any]:
    c = get_container(request)
    technique = settings.indexing_technique or dataset["indexing_technique"]
    if technique is None:
        raise BadRequest("indexing_technique is required.")
    process_rule = _process_rule(settings.process_rule, settings.doc_form)
    extension = _check_file(filename, len(data), c.settings.UPLOAD_FILE_SIZE_LIMIT)
    document_id, batch = uuid4(), _batch()
    source_key = f"{document_prefix(dataset['id'], document_id)}source/{_safe_filename(filename)}"
    await c.storage.save(source_key, data)
    try:
        await send(request, key, cmd.CreateDocument(
            dataset_id=dataset["id"], document_id=document_id, name=name,
            position=await kq.next_document_position(c.engine, dataset["id"]), batch=batch,
            source=SourceFile(id=uuid4(), key=source_key, name=filename, size=len(data),
                              extension=extension, mime_type=mime_type),
            doc_form=settings.doc_form, doc_language=settings.doc_language,
            process_rule=process_rule, process_rule_id=uuid4(), indexing_technique=technique,
            lane="priority" if len(data) <= c.settings.PRIORITY_LANE_MAX_BYTES else "bulk",
        ), document_id)
    except EddyError:
        await c.storage.delete(source_key)  # rejected: leave nothing behind
        raise
    return {"document": document_view(await document_of(request, dataset, str(document_id))),
            "batch": batch}


@router.post("/{dataset_id}/document/create-by-text")
@router.post("/{dataset_id}/document/create_by_text", include_in_schema=False)
async def create_by_text(request: Request, dataset_id: str, body: api.CreateByTextRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    check_length("text", body.text, get_container(request).settings.DOCUMENT_TEXT_MAX_LENGTH)
    dataset = await dataset_of(request, key, dataset_id)
    filename = body.name if body.name.lower().endswith((".txt", ".md")) else f"{body.name}.txt"
    return await _create_document(request, key, dataset, body, body.name, filename,
                                  body.text.encode(), "text/plain")


async def _uploaded(request: Request, limit_mb: int,
                    ) -> tuple[StarletteUploadFile, dict[str, Any]]:
    file, form = await one_file(request, limit_mb)
    raw = form.get("data")
    try:
        data = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except json.JSONDecodeError:
        raise BadRequest("data must be a JSON string.") from None
    if not isinstance(data, dict):
        raise BadRequest("data must be a JSON object.")
    return file, data


def _settings(data: dict[str, Any], model: type[api.Body]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                   for e in exc.errors())) from None


@router.post("/{dataset_id}/document/create-by-file")
@router.post("/{dataset_id}/document/create_by_file", include_in_schema=False)
async def create_by_file(request: Request, dataset_id: str,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    limit_mb = get_container(request).settings.UPLOAD_FILE_SIZE_LIMIT
    dataset = await dataset_of(request, key, dataset_id)
    file, data = await _uploaded(request, limit_mb)
    settings = _settings(data, api.DocumentSettings)
    filename = file.filename or "file"
    _check_file(filename, 0, limit_mb)
    content = await read_limited(file, limit_mb)
    return await _create_document(request, key, dataset, settings, filename, filename, content,
                                  file.content_type)


async def _replace_source(request: Request, key: ApiKeyPrincipal, dataset: dict[str, Any],
                          document: dict[str, Any], name: str | None, filename: str,
                          data: bytes, mime_type: str | None,
                          process_rule: dict[str, Any] | None) -> dict[str, Any]:
    c = get_container(request)
    extension = _check_file(filename, len(data), c.settings.UPLOAD_FILE_SIZE_LIMIT)
    rule = _process_rule(process_rule, document["doc_form"]) if process_rule else None
    source_key = (f"{document_prefix(dataset['id'], document['id'])}source/"
                  f"{uuid4().hex[:8]}-{_safe_filename(filename)}")
    await c.storage.save(source_key, data)
    await send(request, key, cmd.ReplaceDocumentSource(
        dataset_id=dataset["id"], document_id=document["id"], name=name,
        source=SourceFile(id=uuid4(), key=source_key, name=filename, size=len(data),
                          extension=extension, mime_type=mime_type),
        process_rule=rule, process_rule_id=uuid4() if rule else None,
        lane="priority" if len(data) <= c.settings.PRIORITY_LANE_MAX_BYTES else "bulk",
    ), document["id"])
    updated = await document_of(request, dataset, str(document["id"]))
    return {"document": document_view(updated), "batch": updated["batch"]}


@router.post("/{dataset_id}/documents/{document_id}/update-by-text")
@router.post("/{dataset_id}/documents/{document_id}/update_by_text", include_in_schema=False)
async def update_by_text(request: Request, dataset_id: str, document_id: str,
                         body: api.UpdateByTextRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    check_length("text", body.text, get_container(request).settings.DOCUMENT_TEXT_MAX_LENGTH)
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    if body.text is None:
        if body.name:
            await send(request, key, cmd.RenameDocument(
                dataset_id=dataset["id"], document_id=document["id"], name=body.name),
                document["id"])
        updated = await document_of(request, dataset, document_id)
        return {"document": document_view(updated), "batch": updated["batch"]}
    name = body.name or document["name"]
    filename = name if name.lower().endswith((".txt", ".md")) else f"{name}.txt"
    return await _replace_source(request, key, dataset, document, body.name, filename,
                                 body.text.encode(), "text/plain", body.process_rule)


@router.patch("/{dataset_id}/documents/{document_id}")  # the spec's canonical file update
@router.post("/{dataset_id}/documents/{document_id}/update-by-file")
@router.post("/{dataset_id}/documents/{document_id}/update_by_file", include_in_schema=False)
async def update_by_file(request: Request, dataset_id: str, document_id: str,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    limit_mb = get_container(request).settings.UPLOAD_FILE_SIZE_LIMIT
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    file, data = await _uploaded(request, limit_mb)
    settings = _settings(data, api.UpdateDocumentSettings)
    filename = file.filename or "file"
    content = await read_limited(file, limit_mb)
    return await _replace_source(request, key, dataset, document, settings.name, filename,
                                 content, file.content_type, settings.process_rule)


@router.get("/{dataset_id}/documents")
async def list_documents(
    request: Request, dataset_id: str, key: ApiKeyPrincipal = DatasetKey,
    page: PageParam = 1, limit: LimitParam = 20,
    keyword: Annotated[str | None, Query(max_length=255)] = None,
    status: Annotated[str | None, Query(
        pattern="^(queuing|indexing|paused|error|available|disabled|archived)$")] = None,
) -> dict[str, Any]:
    limit = page_size(limit)
    dataset = await dataset_of(request, key, dataset_id)
    result = await kq.list_documents(get_container(request).engine, dataset["id"], page=page,
                                     limit=limit, keyword=keyword, status=status)
    return {"data": [document_view(r) for r in result.items],
            "has_more": page * limit < result.total, "limit": limit, "total": result.total,
            "page": page}


@router.patch("/{dataset_id}/documents/status/{action}")
async def document_status(request: Request, dataset_id: str, action: str,
                          body: api.DocumentIdsRequest,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, str]:
    if action not in ("enable", "disable", "archive", "un_archive"):
        raise BadRequest(f"Invalid action {action!r}.")
    dataset = await dataset_of(request, key, dataset_id)
    await send(request, key, cmd.UpdateDocumentStatus(
        dataset_id=dataset["id"], document_ids=body.document_ids, action=action),  # type: ignore[arg-type]
        dataset["id"])
    return {"result": "success"}


@router.get("/{dataset_id}/documents/{document_id}")
async def get_document(request: Request, dataset_id: str, document_id: str,
                       key: ApiKeyPrincipal = DatasetKey,
                       metadata: Annotated[str, Query()] = "all") -> dict[str, Any]:
    """Dify's DocumentApi.get: `metadata=only` answers id, doc_type and doc_metadata;
    `without` leaves those two out."""
    if metadata not in ("all", "only", "without"):
        raise InvalidMetadata(f"Invalid metadata value: {metadata}")
    dataset = await dataset_of(request, key, dataset_id)
    row = await document_of(request, dataset, document_id)
    detail = document_detail_view(
        row, await kq.latest_process_rule(get_container(request).engine, dataset["id"]))
    if metadata == "only":
        return {k: detail[k] for k in ("id", "doc_type", "doc_metadata")}
    if metadata == "without":
        return {k: v for k, v in detail.items() if k not in ("doc_type", "doc_metadata")}
    return detail


@router.delete("/{dataset_id}/documents/{document_id}", status_code=204)
async def delete_document(request: Request, dataset_id: str, document_id: str,
                          key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await dataset_of(request, key, dataset_id)
    document = await document_of(request, dataset, document_id)
    await send(request, key, cmd.DeleteDocument(dataset_id=dataset["id"],
                                                 document_id=document["id"]), document["id"])
    return Response(status_code=204)
