"""Files a run is given (its file inputs, and `files`, which become `sys.files`) turned into
the Dify file mappings nodes read (workflow_graph/files.py) before the run is recorded, as
Dify's app generators build File objects: an upload must be this app's and this user's
(else UploadFileNotFound, and nothing is recorded), a URL is kept to be fetched, through
the SSRF guard, by a node that reads it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.deps import parse_id
from gateway.workflow.inputs import start_variables, validate_run_inputs
from projections.conversation import queries
from schemas.conversation.api import InputFile
from schemas.conversation.naming import end_user_id_for
from schemas.errors import BadRequest, UploadFileNotFound
from workflow_graph.files import LOCAL_FILE, REMOTE_URL, remote_file, uploaded_file

FILE_INPUT_TYPES = frozenset({"file", "file-list"})


async def run_arguments(engine: AsyncEngine, app_id: UUID, tenant_id: UUID, user: str,
                        graph: Mapping[str, Any], inputs: Mapping[str, Any],
                        files: Sequence[InputFile] | None
                        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What a run records of a request's `inputs` and `files`: the inputs checked against
    the graph's start node, with their files as mappings, and the files (`sys.files`)."""
    variables = start_variables(graph)
    checked = await input_files(engine, app_id, tenant_id, user, variables,
                                validate_run_inputs(variables, inputs))
    return checked, await run_files(engine, app_id, tenant_id, user,
                                    [f.model_dump() for f in files or []])


async def input_files(engine: AsyncEngine, app_id: UUID, tenant_id: UUID, user: str,
                      variables: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]
                      ) -> dict[str, Any]:
    """The run's inputs with each file input (checked by validate_run_inputs) a mapping."""
    resolved = dict(inputs)
    for variable in variables:
        name = str(variable.get("variable", ""))
        value = resolved.get(name)
        if variable.get("type") not in FILE_INPUT_TYPES or not value:
            continue
        given = value if isinstance(value, list) else [value]
        files = await run_files(engine, app_id, tenant_id, user, given)
        for requested, file in zip(given, files, strict=True):
            _check_allowed(variable, requested, file)
        resolved[name] = files if isinstance(value, list) else files[0]
    return resolved


def _check_allowed(variable: Mapping[str, Any], requested: Mapping[str, Any],
                   file: Mapping[str, Any]) -> None:
    """Dify's check of a file input against its declaration (file_factory's
    `_is_file_valid_with_config`): the type the request names is one the input allows (a
    `custom` file: its extension is one allowed), and so is its transfer method."""
    kind = str(requested.get("type") or "custom")
    types = variable.get("allowed_file_types") or []
    extensions = {str(e).lower() for e in variable.get("allowed_file_extensions") or []}
    methods = variable.get("allowed_file_upload_methods") or []
    if (types and kind != "custom" and kind not in types) \
            or (types and kind == "custom" and str(file["extension"]).lower() not in extensions) \
            or (methods and file["transfer_method"] not in methods):
        raise BadRequest(f"File validation failed for file: {file['filename']}")


async def run_files(engine: AsyncEngine, app_id: UUID, tenant_id: UUID, user: str,
                    files: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [await _file(engine, app_id, tenant_id, user, file) for file in files]


async def _file(engine: AsyncEngine, app_id: UUID, tenant_id: UUID, user: str,
                file: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(file.get("type") or "custom")
    method = file.get("transfer_method")
    if method == REMOTE_URL:
        url = file.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequest("url is required for a remote_url file.")
        return remote_file(url=url, tenant_id=str(tenant_id), kind=kind)
    if method != LOCAL_FILE:
        raise BadRequest(f"transfer_method {method} is not supported.")
    row = await queries.upload_file(engine, app_id, parse_id(str(file.get("upload_file_id")
                                                                 or ""), UploadFileNotFound))
    if row is None or row["end_user_id"] != end_user_id_for(app_id, user):
        raise UploadFileNotFound()
    return uploaded_file(file_id=str(row["id"]), tenant_id=str(tenant_id), filename=row["name"],
                         extension=row["extension"], mime_type=row["mime_type"],
                         size=row["size"], kind=kind)
