"""Knowledge Service API: a dataset's metadata fields and its documents' values."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from fastapi import APIRouter, Request, Response

from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.deps import get_container, maybe_uuid, parse_id
from gateway.knowledge.deps import send
from gateway.knowledge.lookups import dataset_of
from gateway.knowledge.views import metadata_field_view
from projections.knowledge import meta_queries as kmq
from schemas.errors import BadRequest, MetadataNotFound
from schemas.knowledge import api
from schemas.knowledge import commands as cmd
from schemas.knowledge.naming import BUILT_IN_METADATA_FIELDS

router = APIRouter(prefix="/v1/datasets")


async def _field(request: Request, dataset: dict[str, Any], metadata_id: str) -> dict[str, Any]:
    row = await kmq.metadata_field(get_container(request).engine, dataset["id"],
                                   parse_id(metadata_id, MetadataNotFound))
    if row is None:
        raise MetadataNotFound()
    return row


@router.post("/{dataset_id}/metadata", status_code=201)
async def create_metadata(request: Request, dataset_id: str, body: api.CreateMetadataRequest,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await dataset_of(request, key, dataset_id)
    metadata_id = uuid4()
    await send(request, key, cmd.AddMetadataField(
        dataset_id=dataset["id"], metadata_id=metadata_id, name=body.name, type=body.type),
        dataset["id"])
    return metadata_field_view(await _field(request, dataset, str(metadata_id)))


@router.get("/{dataset_id}/metadata")
async def list_metadata(request: Request, dataset_id: str,
                        key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await dataset_of(request, key, dataset_id)
    rows = await kmq.metadata_fields(get_container(request).engine, dataset["id"])
    return {"doc_metadata": [{**metadata_field_view(r), "count": r["count"]} for r in rows],
            "built_in_field_enabled": bool(dataset["built_in_field_enabled"])}


@router.get("/{dataset_id}/metadata/built-in")
async def built_in_metadata(request: Request, dataset_id: str,
                            key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    await dataset_of(request, key, dataset_id)
    return {"fields": [{"name": name, "type": kind}
                       for name, kind in BUILT_IN_METADATA_FIELDS.items()]}


@router.post("/{dataset_id}/metadata/built-in/{action}")
async def toggle_built_in_metadata(request: Request, dataset_id: str, action: str,
                                   key: ApiKeyPrincipal = DatasetKey) -> dict[str, str]:
    if action not in ("enable", "disable"):
        raise BadRequest(f"Invalid action {action!r}; use enable or disable.")
    dataset = await dataset_of(request, key, dataset_id)
    await send(request, key, cmd.ToggleBuiltInMetadataFields(
        dataset_id=dataset["id"], enabled=action == "enable"), dataset["id"])
    return {"result": "success"}


@router.patch("/{dataset_id}/metadata/{metadata_id}")
async def update_metadata(request: Request, dataset_id: str, metadata_id: str,
                          body: api.UpdateMetadataRequest,
                          key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    dataset = await dataset_of(request, key, dataset_id)
    field = await _field(request, dataset, metadata_id)
    await send(request, key, cmd.RenameMetadataField(
        dataset_id=dataset["id"], metadata_id=field["id"], name=body.name), dataset["id"])
    return metadata_field_view(await _field(request, dataset, metadata_id))


@router.delete("/{dataset_id}/metadata/{metadata_id}", status_code=204)
async def delete_metadata(request: Request, dataset_id: str, metadata_id: str,
                          key: ApiKeyPrincipal = DatasetKey) -> Response:
    dataset = await dataset_of(request, key, dataset_id)
    field = await _field(request, dataset, metadata_id)
    await send(request, key, cmd.DeleteMetadataField(
        dataset_id=dataset["id"], metadata_id=field["id"]), dataset["id"])
    return Response(status_code=204)


@router.post("/{dataset_id}/documents/metadata")
async def update_documents_metadata(request: Request, dataset_id: str,
                                    body: api.UpdateDocumentsMetadataRequest,
                                    key: ApiKeyPrincipal = DatasetKey) -> dict[str, str]:
    engine = get_container(request).engine
    dataset = await dataset_of(request, key, dataset_id)
    fields = {r["id"] for r in await kmq.metadata_fields(engine, dataset["id"])}
    operations = []
    for op in body.operation_data:
        document_id = maybe_uuid(op.document_id)
        # Dify answers an unknown document in this batch with 400, not 404.
        if document_id is None or not await kmq.document_ids_in(engine, dataset["id"],
                                                                [document_id]):
            raise BadRequest("Document not found.")
        values = []
        for item in op.metadata_list:
            metadata_id = maybe_uuid(item.id)
            if metadata_id is None or metadata_id not in fields:
                raise BadRequest(f"Metadata field {item.id} ({item.name}) not found in this "
                                 "knowledge base.")
            values.append(cmd.MetadataValue(metadata_id=metadata_id, value=item.value))
        operations.append(cmd.DocumentMetadataOperation(
            document_id=document_id, values=values, partial_update=op.partial_update))
    if operations:
        await send(request, key, cmd.UpdateDocumentsMetadata(
            dataset_id=dataset["id"], operations=operations), dataset["id"])
    return {"result": "success"}
