"""Knowledge Service API (/v1/datasets…), authenticated by `dataset-…` keys, per Dify's spec."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile as StarletteUploadFile

from adapters.embeddings.base import EmbeddingProvider
from adapters.embeddings.models import UnknownEmbeddingModel
from adapters.llm.openai_protocol import ProviderError
from gateway.auth import ApiKeyPrincipal, ConsoleUser, CurrentUser, DatasetKey
from gateway.deps import command_gateway, get_container, maybe_uuid, parse_id
from gateway.knowledge.hits import segment_hit_batcher
from gateway.knowledge.views import (
    dataset_view,
    document_detail_view,
    document_view,
    indexing_status_view,
    retrieval_record_view,
    segment_view,
)
from gateway.uploads import one_file, read_limited
from indexing.extract import SUPPORTED_EXTENSIONS
from indexing.lexical import extract_keywords
from indexing.split import ProcessRule
from projections.knowledge import queries as kq
from projections.knowledge.retrieval import (
    SEARCH_METHODS,
    RetrievalSettings,
    Retriever,
)
from schemas.base import CommandPayload
from schemas.errors import (
    BadRequest,
    CompletionRequestError,
    DatasetNotFound,
    DocumentNotFound,
    EddyError,
    FileTooLarge,
    InvalidMetadata,
    SegmentNotFound,
    UnsupportedFileType,
)
from schemas.knowledge import api
from schemas.knowledge import commands as cmd
from schemas.knowledge.events import SourceFile
from schemas.knowledge.naming import document_prefix

router = APIRouter(prefix="/v1/datasets")
PageParam = Annotated[int, Query(ge=1, le=99999)]
LimitParam = Annotated[int, Query(ge=1)]
MAX_PAGE_SIZE = 100  # Dify caps a larger `limit` to this (max_per_page), it does not refuse it


def page_size(limit: int) -> int:
    return min(limit, MAX_PAGE_SIZE)


async def _send(request: Request, key: ApiKeyPrincipal, payload: CommandPayload,
                aggregate_id: UUID) -> Any:
    return await command_gateway(request).send(payload, aggregate_id=aggregate_id,
                                        tenant_id=key.tenant_id, actor_id=key.actor_id)


async def _dataset(request: Request, key: ApiKeyPrincipal, dataset_id: str) -> dict[str, Any]:
    row = await kq.dataset(get_container(request).engine, key.tenant_id,
                           parse_id(dataset_id, DatasetNotFound))
    if row is None:
        raise DatasetNotFound()
    return row


async def _document(request: Request, dataset: dict[str, Any],
                    document_id: str) -> dict[str, Any]:
    row = await kq.document(get_container(request).engine, dataset["id"],
                            parse_id(document_id, DocumentNotFound))
    if row is None:
        raise DocumentNotFound()
    return row


# --- datasets -----------------------------------------------------------------------------------


async def _embedding_model(request: Request, tenant_id: UUID, provider: str | None,
                           model: str | None) -> tuple[str, str]:
    """The (provider, model) a request names; unset: the configured default. A model of
    the workspace's own providers must be connected there (else provider_not_initialize)."""
    models = get_container(request).embedding_models
    try:
        named = models.key(provider, model)
        if named not in models.offered:
            await models.resolve(tenant_id, *named)
    except UnknownEmbeddingModel as exc:
        raise BadRequest(str(exc)) from None
    return named


async def _embeddings_of(request: Request, dataset: dict[str, Any]) -> EmbeddingProvider:
    """The dataset's model: its token counts size the segments written by hand."""
    try:
        model = await get_container(request).embedding_models.resolve(
            dataset["tenant_id"], dataset["embedding_model_provider"],
            dataset["embedding_model"])
    except UnknownEmbeddingModel as exc:
        raise BadRequest(str(exc)) from None
    return model.embeddings


@router.post("")
async def create_dataset(request: Request, body: api.CreateDatasetRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    if body.provider == "external":
        raise BadRequest("External knowledge bases are not supported.")
    provider, model = await _embedding_model(request, key.tenant_id,
                                             body.embedding_model_provider, body.embedding_model)
    dataset_id = uuid4()
    await _send(request, key, cmd.CreateDataset(
        dataset_id=dataset_id, name=body.name, description=body.description,
        indexing_technique=body.indexing_technique, permission=body.permission,
        embedding_model=model, embedding_model_provider=provider,
        retrieval_model=(body.retrieval_model or api.RetrievalModelBody()).model_dump(),
    ), dataset_id)
    return dataset_view(await _dataset(request, key, str(dataset_id)))


@router.get("")
async def list_datasets(request: Request, key: ApiKeyPrincipal = DatasetKey,
                        page: PageParam = 1, limit: LimitParam = 20,
                        keyword: Annotated[str | None, Query(max_length=255)] = None,
                        tag_ids: Annotated[list[str] | None, Query()] = None,
                        ) -> dict[str, Any]:
    limit = page_size(limit)
    # tag_ids: datasets bound to any of them; a malformed id matches nothing
    tags = None if not tag_ids else [t for t in (maybe_uuid(v) for v in tag_ids) if t]
    result = await kq.list_datasets(get_container(request).engine, key.tenant_id, page=page,
                                    limit=limit, keyword=keyword, tag_ids=tags)
    return {"data": [dataset_view(r) for r in result.items],
            "has_more": page * limit < result.total, "limit": limit, "total": result.total,
            "page": page}


@router.get("/{dataset_id}")
async def get_dataset(request: Request, dataset_id: str,
                      key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    return dataset_view(await _dataset(request, key, dataset_id))


@router.patch("/{dataset_id}")
async def update_dataset(request: Request, dataset_id: str, body: api.UpdateDatasetRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await _dataset(request, key, dataset_id)
    changes = body.model_dump(exclude_unset=True)
    if body.retrieval_model is not None:
        changes["retrieval_model"] = body.retrieval_model.model_dump()
    if body.embedding_model is not None or body.embedding_model_provider is not None:
        # A new model re-embeds every document: the handler re-indexes those listed here.
        provider, model = await _embedding_model(
            request, key.tenant_id, body.embedding_model_provider or (
                None if body.embedding_model else dataset["embedding_model_provider"]),
            body.embedding_model)
        changes.update(embedding_model_provider=provider, embedding_model=model,
                       document_ids=await kq.document_ids(get_container(request).engine,
                                                          dataset["id"]))
    await _send(request, key, cmd.UpdateDataset(dataset_id=dataset["id"], **changes),
                dataset["id"])
    return dataset_view(await _dataset(request, key, dataset_id))


@router.delete("/{dataset_id}", status_code=204)
async def delete_dataset(request: Request, dataset_id: str,
                         key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await _dataset(request, key, dataset_id)
    await _send(request, key, cmd.DeleteDataset(dataset_id=dataset["id"]), dataset["id"])
    return Response(status_code=204)


# --- documents ----------------------------------------------------------------------------------


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


def _check_length(field: str, value: str | None, limit: int) -> None:
    """Refuse over-long text before any lookup or write (limits are settings)."""
    if value is not None and len(value) > limit:
        raise BadRequest(f"{field} is too long: {len(value)} characters, at most {limit}.")


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
        await _send(request, key, cmd.CreateDocument(
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
    return {"document": document_view(await _document(request, dataset, str(document_id))),
            "batch": batch}


@router.post("/{dataset_id}/document/create-by-text")
@router.post("/{dataset_id}/document/create_by_text", include_in_schema=False)
async def create_by_text(request: Request, dataset_id: str, body: api.CreateByTextRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    _check_length("text", body.text, get_container(request).settings.DOCUMENT_TEXT_MAX_LENGTH)
    dataset = await _dataset(request, key, dataset_id)
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
    dataset = await _dataset(request, key, dataset_id)
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
    await _send(request, key, cmd.ReplaceDocumentSource(
        dataset_id=dataset["id"], document_id=document["id"], name=name,
        source=SourceFile(id=uuid4(), key=source_key, name=filename, size=len(data),
                          extension=extension, mime_type=mime_type),
        process_rule=rule, process_rule_id=uuid4() if rule else None,
        lane="priority" if len(data) <= c.settings.PRIORITY_LANE_MAX_BYTES else "bulk",
    ), document["id"])
    updated = await _document(request, dataset, str(document["id"]))
    return {"document": document_view(updated), "batch": updated["batch"]}


@router.post("/{dataset_id}/documents/{document_id}/update-by-text")
@router.post("/{dataset_id}/documents/{document_id}/update_by_text", include_in_schema=False)
async def update_by_text(request: Request, dataset_id: str, document_id: str,
                         body: api.UpdateByTextRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    _check_length("text", body.text, get_container(request).settings.DOCUMENT_TEXT_MAX_LENGTH)
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
    if body.text is None:
        if body.name:
            await _send(request, key, cmd.RenameDocument(
                dataset_id=dataset["id"], document_id=document["id"], name=body.name),
                document["id"])
        updated = await _document(request, dataset, document_id)
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
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
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
    dataset = await _dataset(request, key, dataset_id)
    result = await kq.list_documents(get_container(request).engine, dataset["id"], page=page,
                                     limit=limit, keyword=keyword, status=status)
    return {"data": [document_view(r) for r in result.items],
            "has_more": page * limit < result.total, "limit": limit, "total": result.total,
            "page": page}


@router.get("/{dataset_id}/documents/{batch}/indexing-status")
async def indexing_status(request: Request, dataset_id: str, batch: str,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await _dataset(request, key, dataset_id)
    rows = await kq.documents_in_batch(get_container(request).engine, dataset["id"], batch)
    if not rows:
        raise DocumentNotFound("Documents not found.")
    return {"data": [indexing_status_view(r) for r in rows]}


@router.patch("/{dataset_id}/documents/status/{action}")
async def document_status(request: Request, dataset_id: str, action: str,
                          body: api.DocumentIdsRequest,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, str]:
    if action not in ("enable", "disable", "archive", "un_archive"):
        raise BadRequest(f"Invalid action {action!r}.")
    dataset = await _dataset(request, key, dataset_id)
    await _send(request, key, cmd.UpdateDocumentStatus(
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
    dataset = await _dataset(request, key, dataset_id)
    row = await _document(request, dataset, document_id)
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
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
    await _send(request, key, cmd.DeleteDocument(dataset_id=dataset["id"],
                                                 document_id=document["id"]), document["id"])
    return Response(status_code=204)


# --- segments -----------------------------------------------------------------------------------


async def _segment(request: Request, document: dict[str, Any], segment_id: str) -> dict[str, Any]:
    target = parse_id(segment_id, SegmentNotFound)
    rows = await kq.segments_by_id(get_container(request).engine, [target])
    row = rows.get(target)
    if row is None or row["document_id"] != document["id"]:
        raise SegmentNotFound()
    return row


async def _keywords(dataset: dict[str, Any], content: str | None,
                    given: list[str] | None) -> list[str] | None:
    """A segment's keywords: the ones given, else, in an economy dataset (searched by
    keyword), those extracted from its new content, as Dify does (jieba TF-IDF; None when
    nothing changes)."""
    if given is not None or not content or dataset["indexing_technique"] != "economy":
        return given
    return await asyncio.to_thread(extract_keywords, content)


@router.post("/{dataset_id}/documents/{document_id}/segments")
async def create_segments(request: Request, dataset_id: str, document_id: str,
                          body: api.CreateSegmentsRequest,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    c = get_container(request)
    for n, s in enumerate(body.segments):
        _check_length(f"segments.{n}.content", s.content, c.settings.SEGMENT_MAX_LENGTH)
        _check_length(f"segments.{n}.answer", s.answer, c.settings.SEGMENT_MAX_LENGTH)
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
    embeddings = await _embeddings_of(request, dataset)
    new = [cmd.NewSegment(segment_id=uuid4(), content=s.content, answer=s.answer,
                          keywords=await _keywords(dataset, s.content, s.keywords or None) or [],
                          word_count=len(s.content), tokens=embeddings.count_tokens(s.content))
           for s in body.segments]
    await _send(request, key, cmd.CreateSegments(
        dataset_id=dataset["id"], document_id=document["id"],
        first_position=await kq.next_segment_position(c.engine, document["id"]), segments=new),
        document["id"])
    rows = await kq.segments_by_id(c.engine, [s.segment_id for s in new])
    return {"data": [segment_view(rows[s.segment_id]) for s in new],
            "doc_form": document["doc_form"]}


@router.get("/{dataset_id}/documents/{document_id}/segments")
async def list_segments(
    request: Request, dataset_id: str, document_id: str, key: ApiKeyPrincipal = DatasetKey,
    page: PageParam = 1, limit: LimitParam = 20,
    keyword: Annotated[str | None, Query(max_length=255)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    limit = page_size(limit)
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
    result = await kq.list_segments(get_container(request).engine, document["id"], page=page,
                                    limit=limit, keyword=keyword, status=status)
    return {"data": [segment_view(r) for r in result.items], "doc_form": document["doc_form"],
            "has_more": page * limit < result.total, "limit": limit, "total": result.total,
            "page": page}


@router.get("/{dataset_id}/documents/{document_id}/segments/{segment_id}")
async def get_segment(request: Request, dataset_id: str, document_id: str, segment_id: str,
                      key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
    return {"data": segment_view(await _segment(request, document, segment_id)),
            "doc_form": document["doc_form"]}


@router.post("/{dataset_id}/documents/{document_id}/segments/{segment_id}")
async def update_segment(request: Request, dataset_id: str, document_id: str, segment_id: str,
                         body: api.UpdateSegmentRequest,
                         key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    c = get_container(request)
    s = body.segment
    _check_length("segment.content", s.content, c.settings.SEGMENT_MAX_LENGTH)
    _check_length("segment.answer", s.answer, c.settings.SEGMENT_MAX_LENGTH)
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
    segment = await _segment(request, document, segment_id)
    await _send(request, key, cmd.UpdateSegment(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"],
        content=s.content, answer=s.answer, enabled=s.enabled,
        keywords=await _keywords(dataset, s.content, s.keywords),
        word_count=len(s.content) if s.content else None,
        tokens=(await _embeddings_of(request, dataset)).count_tokens(s.content)
        if s.content else None,
    ), document["id"])
    return {"data": segment_view(await _segment(request, document, segment_id)),
            "doc_form": document["doc_form"]}


@router.delete("/{dataset_id}/documents/{document_id}/segments/{segment_id}", status_code=204)
async def delete_segment(request: Request, dataset_id: str, document_id: str, segment_id: str,
                         key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await _dataset(request, key, dataset_id)
    document = await _document(request, dataset, document_id)
    segment = await _segment(request, document, segment_id)
    await _send(request, key, cmd.DeleteSegment(
        dataset_id=dataset["id"], document_id=document["id"], segment_id=segment["id"]),
        document["id"])
    return Response(status_code=204)


# --- retrieval ----------------------------------------------------------------------------------


@router.post("/{dataset_id}/retrieve")
@router.post("/{dataset_id}/hit-testing")
async def retrieve(request: Request, dataset_id: str, body: api.RetrieveRequest,
                   key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    c = get_container(request)
    dataset = await _dataset(request, key, dataset_id)
    model = body.retrieval_model.model_dump(exclude_unset=True) if body.retrieval_model else None
    settings = RetrievalSettings.from_dify(model, dataset["retrieval_model"] or {},
                                           economy=dataset["indexing_technique"] == "economy")
    assert settings.search_method in SEARCH_METHODS
    retriever = Retriever(c.engine, c.embedding_models, c.vectors, c.keywords,
                          c.settings.SECRET_KEY)
    try:
        found = await retriever.retrieve(dataset, body.query, settings)
    except ProviderError as exc:  # the rerank model failed (Dify: completion_request_error)
        raise CompletionRequestError(exc.message or str(exc)) from exc
    segment_hit_batcher(request).record(key.tenant_id, dataset["id"],
                                        [(f.row["document_id"], f.row["id"]) for f in found])
    return {"query": {"content": body.query},
            "records": [retrieval_record_view(f) for f in found]}


# --- console: pause, resume, retry (Dify's console paths; not in the Service API) ----------

console_router = APIRouter(prefix="/console/api/datasets")


async def _control(request: Request, user: ConsoleUser, dataset_id: str,
                   document_ids: list[UUID], action: str) -> None:
    c = get_container(request)
    dataset = await kq.dataset(c.engine, user.tenant_id, parse_id(dataset_id, DatasetNotFound))
    if dataset is None:
        raise DatasetNotFound()
    await command_gateway(request).send(
        cmd.ControlDocumentIndexing(dataset_id=dataset["id"], document_ids=document_ids,
                                    action=action),  # type: ignore[arg-type]
        aggregate_id=document_ids[0] if len(document_ids) == 1 else dataset["id"],
        tenant_id=user.tenant_id, actor_id=user.account_id)


@console_router.patch("/{dataset_id}/documents/{document_id}/processing/{action}")
async def pause_or_resume(request: Request, dataset_id: str, document_id: str, action: str,
                          user: ConsoleUser = CurrentUser) -> dict[str, str]:
    if action not in ("pause", "resume"):
        raise BadRequest(f"Invalid action {action!r}.")
    await _control(request, user, dataset_id, [parse_id(document_id, DocumentNotFound)], action)
    return {"result": "success"}


@console_router.post("/{dataset_id}/retry", status_code=204)
async def retry(request: Request, dataset_id: str, body: api.DocumentIdsRequest,
                user: ConsoleUser = CurrentUser) -> Response:
    """Retry failed documents (Dify's DocumentRetryApi)."""
    await _control(request, user, dataset_id, body.document_ids, "retry")
    return Response(status_code=204)


@console_router.post("/{dataset_id}/retry-failed", status_code=204)
async def retry_all_failed(request: Request, dataset_id: str,
                           user: ConsoleUser = CurrentUser) -> Response:
    """Every document of the dataset that ended in error gets a new attempt."""
    c = get_container(request)
    dataset_uuid = parse_id(dataset_id, DatasetNotFound)
    failed = await kq.list_documents(c.engine, dataset_uuid, page=1, limit=10_000,
                                     keyword=None, status="error")
    if failed.items:
        await _control(request, user, dataset_id, [d["id"] for d in failed.items], "retry")
    return Response(status_code=204)


@console_router.post("/{dataset_id}/documents/{document_id}/reindex", status_code=204)
async def reindex(request: Request, dataset_id: str, document_id: str,
                  user: ConsoleUser = CurrentUser) -> Response:
    """Index the document again from its source (e.g. after editing its segments)."""
    await _control(request, user, dataset_id, [parse_id(document_id, DocumentNotFound)],
                   "reindex")
    return Response(status_code=204)
