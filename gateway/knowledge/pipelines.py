"""Knowledge pipeline operations of Dify's Service API, which Eddy does not have: every
knowledge base here is a classic one, without a pipeline. They answer what Dify answers for
a knowledge base without one (400 `invalid_param`, "Pipeline not found…"), after the usual
checks (the key, then the dataset: an unknown one is still 404), instead of a bare 404.

Included before the main knowledge router: `/v1/datasets/pipeline/…` is not a dataset id.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway.auth import ApiKeyPrincipal, DatasetKey
from gateway.knowledge.lookups import dataset_of
from schemas.errors import PipelineNotSupported

router = APIRouter(prefix="/v1/datasets")


@router.post("/pipeline/file-upload")
async def upload_pipeline_file(key: ApiKeyPrincipal = DatasetKey) -> None:
    raise PipelineNotSupported()


@router.get("/{dataset_id}/pipeline/datasource-plugins")
@router.post("/{dataset_id}/pipeline/datasource/nodes/{node_id}/run")
@router.post("/{dataset_id}/pipeline/run")
async def pipeline_operation(request: Request, dataset_id: str,
                             key: ApiKeyPrincipal = DatasetKey) -> None:
    await dataset_of(request, key, dataset_id)
    raise PipelineNotSupported()
