"""Dify's app DSL on the console: import (YAML content or a URL fetched through the SSRF
guard), confirm an import waiting on its version, export.

An import answers Dify's `Import` shape: `completed` (200), `completed-with-warnings` (200:
an older minor DSL version, or nodes and dependencies needing plugins Eddy does not have,
listed in `warnings`), `pending` (202: an older major or a newer version; the document waits
in the key-value store for `…/imports/{id}/confirm` as long as Dify keeps it in Redis) or
`failed` (400, `error` says why; nothing was created). Without `app_id` it creates an app;
with one, it overwrites that workflow app's draft."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID, uuid4

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from adapters.http.ssrf_guard import AllowList, UrlRefused, guarded_request
from gateway.auth import ConsoleUser, Editor
from gateway.deps import command_gateway, get_container, maybe_uuid, parse_id
from gateway.platform.console import console_app
from gateway.workflow.drafts import checked_graph, sealed_environment
from projections.conversation import queries as conversation_queries
from projections.keyring import workspace_keyring
from projections.workflow import queries
from projections.workflow.environment import unsealed_environment
from schemas.conversation import commands as conversation_cmd
from schemas.conversation.config import AppModelConfig
from schemas.conversation.naming import app_config_id_for
from schemas.errors import AppNotFound, EddyError, WorkflowNotFound
from schemas.platform import commands as platform_cmd
from schemas.workflow import api
from schemas.workflow import commands as cmd
from schemas.workflow.naming import (
    WORKFLOW_APP_MODES,
    import_dependencies_key,
    import_key,
    workflow_draft_id_for,
)
from workflow_graph.defaults import DEFAULT_FEATURES, default_graph
from workflow_graph.dsl import CURRENT_DSL_VERSION, AppDsl, ImportStatus, dump_dsl, parse_dsl
from workflow_graph.errors import WorkflowGraphError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console/api")

DSL_MAX_BYTES = 10 * 1024 * 1024  # Dify's DSL_MAX_SIZE
PENDING_IMPORT_SECONDS = 10 * 60  # Dify's IMPORT_INFO_REDIS_EXPIRY
ICON_TYPES = ("emoji", "image", "link")
_HTTP_STATUS = {ImportStatus.FAILED: 400, ImportStatus.PENDING: 202}


class ImportFailed(Exception):
    """The import cannot go on: its answer is `failed` with this message (so is it for a
    WorkflowGraphError, a document or graph that cannot be read, naming what is wrong)."""


def _answer(import_id: UUID, status: ImportStatus, *, app: dict[str, Any] | None = None,
            imported_version: str = "", error: str = "",
            warnings: list[str] | None = None) -> JSONResponse:
    body = {"id": str(import_id), "status": status.value,
            "app_id": str(app["id"]) if app else None, "app_mode": app["mode"] if app else None,
            "current_dsl_version": CURRENT_DSL_VERSION, "imported_dsl_version": imported_version,
            "error": error, "warnings": warnings or []}
    return JSONResponse(body, status_code=_HTTP_STATUS.get(status, 200))


async def _fetch(request: Request, url: str) -> str:
    # Dify's convenience: a GitHub page of a file means the file itself.
    if url.startswith("https://github.com/") and "/blob/" in url \
            and url.endswith((".yml", ".yaml")):
        url = url.replace("https://github.com/", "https://raw.githubusercontent.com/", 1)
        url = url.replace("/blob/", "/", 1)
    allow = AllowList.parse(get_container(request).settings.SSRF_ALLOWED_HOSTS)
    try:
        fetched = await guarded_request("GET", url.strip(), allow, max_bytes=DSL_MAX_BYTES)
    except UrlRefused as refused:
        raise ImportFailed(f"Error fetching YAML from URL: {refused}") from None
    if not 200 <= fetched.status < 300:
        raise ImportFailed(f"Error fetching YAML from URL: HTTP {fetched.status}")
    if not fetched.body:
        raise ImportFailed("Empty content from url")
    return fetched.body.decode("utf-8", errors="replace")


async def _content(request: Request, body: api.ImportRequest) -> str:
    if body.mode == "yaml-url":
        if not body.yaml_url:
            raise ImportFailed("yaml_url is required when import_mode is yaml-url")
        return await _fetch(request, body.yaml_url)
    if not body.yaml_content:
        raise ImportFailed("yaml_content is required when import_mode is yaml-content")
    if len(body.yaml_content.encode()) > DSL_MAX_BYTES:
        raise ImportFailed("File size exceeds the limit of 10MB")
    return body.yaml_content


def _read(content: str) -> AppDsl:
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as error:
        raise ImportFailed(f"Invalid YAML format: {error}") from None
    if not isinstance(data, dict):
        raise ImportFailed("Invalid YAML format: content must be a mapping")
    return parse_dsl(data)


async def _target(request: Request, user: ConsoleUser, app_id: UUID | None,
                  dsl: AppDsl) -> dict[str, Any] | None:
    """The app an import overwrites (Dify: only a workflow or advanced-chat app's draft)."""
    if app_id is None:
        return None
    try:
        app = await console_app(request, user, app_id)
    except AppNotFound:
        raise ImportFailed("App not found") from None
    if app["mode"] not in WORKFLOW_APP_MODES:
        raise ImportFailed("Only workflow or advanced chat apps can be overwritten")
    if app["mode"] != dsl.mode.value:
        raise ImportFailed(f"The DSL is of a {dsl.mode.value} app; this app is "
                           f"{app['mode']}")
    return app


def _plugin_warnings(dsl: AppDsl) -> list[str]:
    """Dependencies name plugins (Dify's marketplace, GitHub or package ones): Eddy has
    none, so each is a warning for the user, never a reason to refuse the app."""
    warnings = []
    for dependency in dsl.dependencies:
        value = dependency.get("value") if isinstance(dependency, dict) else None
        identifier = next((str(value[k]) for k in ("marketplace_plugin_unique_identifier",
                                                   "plugin_unique_identifier", "repo")
                           if isinstance(value, dict) and value.get(k)), "unknown")
        warnings.append(f"plugin {identifier} is not installed")
    return warnings


def _workflow_of(dsl: AppDsl) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]],
                                       list[dict[str, Any]]]:
    assert dsl.workflow is not None, "workflow and advanced-chat documents carry one"
    spec = dsl.workflow
    return (dict(spec.graph.raw), dict(spec.features),
            [dict(v.raw) for v in spec.environment_variables],
            [dict(v.raw) for v in spec.conversation_variables])


def _model_config_of(dsl: AppDsl) -> dict[str, Any]:
    try:
        return AppModelConfig.model_validate(dsl.model_config).model_dump(mode="json")
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in error.errors())
        raise ImportFailed(f"model_config: {problems}") from None


@dataclass(frozen=True)
class Imported:
    app: dict[str, Any]  # the app's console row
    warnings: list[str]


async def _apply(request: Request, user: ConsoleUser, dsl: AppDsl, options: api.ImportRequest,
                 app: dict[str, Any] | None) -> Imported:
    """Create (or overwrite) the app from the document, with the request's name, icon…
    before the document's. Everything is checked before the first command, so a failed
    import leaves nothing behind."""
    warnings = _plugin_warnings(dsl)
    workflow = model_config = None
    if dsl.mode.has_workflow:
        workflow = _workflow_of(dsl)
        warnings = checked_graph(workflow[0], dsl.mode.value) + warnings
    else:
        model_config = _model_config_of(dsl)
    sender = command_gateway(request)
    meta = dsl.app
    icon_type = options.icon_type or meta.get("icon_type")
    fields = {
        "name": options.name or dsl.name or (app["name"] if app else "Imported app"),
        "description": options.description or str(meta.get("description") or ""),
        "icon_type": icon_type if icon_type in ICON_TYPES else "emoji",
        "icon": options.icon or str(meta.get("icon") or "🤖"),
        "icon_background": options.icon_background
        or str(meta.get("icon_background") or "#FFEAD5"),
    }
    if app is None:
        app_id = uuid4()
        await sender.send(platform_cmd.CreateApp(app_id=app_id, mode=dsl.mode.value, **fields),
                          aggregate_id=app_id, tenant_id=user.tenant_id,
                          actor_id=user.account_id, creates=True)
    else:
        app_id = app["id"]
        await sender.send(platform_cmd.UpdateApp(app_id=app_id, **fields), aggregate_id=app_id,
                          tenant_id=user.tenant_id, actor_id=user.account_id)
    if workflow is not None:
        graph, features, environment, conversation = workflow
        await sender.send(cmd.SyncWorkflowDraft(
            app_id=app_id, graph=graph, features=features,
            environment_variables=await sealed_environment(request, user.tenant_id,
                                                           environment),
            conversation_variables=conversation, overwrite=True,
            dependencies=list(dsl.dependencies)),
            aggregate_id=workflow_draft_id_for(app_id), tenant_id=user.tenant_id,
            actor_id=user.account_id)
    if model_config is not None:
        await sender.send(conversation_cmd.ConfigureAppModel(app_id=app_id, config=model_config),
                          aggregate_id=app_config_id_for(app_id), tenant_id=user.tenant_id,
                          actor_id=user.account_id)
    if dsl.dependencies:
        await get_container(request).kv.set(import_dependencies_key(app_id),
                                            json.dumps(list(dsl.dependencies)),
                                            ttl=PENDING_IMPORT_SECONDS)
    return Imported(await console_app(request, user, app_id), warnings)


def _status(dsl: AppDsl, warnings: list[str]) -> ImportStatus:
    if warnings and dsl.status is ImportStatus.COMPLETED:
        return ImportStatus.COMPLETED_WITH_WARNINGS
    return dsl.status


@router.post("/apps/imports")
async def import_app(request: Request, body: api.ImportRequest,
                     user: ConsoleUser = Editor) -> JSONResponse:
    import_id = uuid4()
    version = ""
    try:
        content = await _content(request, body)
        dsl = _read(content)
        version = dsl.version
        app = await _target(request, user, body.app_id, dsl)
        if dsl.status is ImportStatus.PENDING:
            # What the confirmation imports: the document itself (a URL is not fetched again).
            waiting = body.model_copy(update={"mode": "yaml-content", "yaml_content": content,
                                              "yaml_url": None})
            await get_container(request).kv.set(import_key(user.tenant_id, import_id),
                                                waiting.model_dump_json(),
                                                ttl=PENDING_IMPORT_SECONDS)
            return _answer(import_id, ImportStatus.PENDING, app=app, imported_version=version)
        imported = await _apply(request, user, dsl, body, app)
    except (ImportFailed, WorkflowGraphError) as failed:
        return _answer(import_id, ImportStatus.FAILED, imported_version=version,
                       error=str(failed))
    log.info("app imported", extra={"app_id": str(imported.app["id"]), "dsl_version": version})
    return _answer(import_id, _status(dsl, imported.warnings), app=imported.app,
                   imported_version=version, warnings=imported.warnings)


@router.post("/apps/imports/{import_id}/confirm")
async def confirm_import(request: Request, import_id: str,
                         user: ConsoleUser = Editor) -> JSONResponse:
    target = maybe_uuid(import_id)
    # Taken, not read: two confirmations of one import never make two apps. Another
    # workspace's pending import is as unknown as an expired one.
    stored = await get_container(request).kv.take(
        import_key(user.tenant_id, target)) if target else None
    if target is None or stored is None:
        return _answer(target or uuid4(), ImportStatus.FAILED,
                       error="Import information expired or does not exist")
    waiting = api.ImportRequest.model_validate_json(stored)
    try:
        dsl = _read(waiting.yaml_content or "")
        app = await _target(request, user, waiting.app_id, dsl)
        imported = await _apply(request, user, dsl, waiting, app)
    except (ImportFailed, WorkflowGraphError) as failed:
        return _answer(target, ImportStatus.FAILED, error=str(failed))
    return _answer(target, ImportStatus.COMPLETED, app=imported.app,
                   imported_version=dsl.version, warnings=imported.warnings)


@router.get("/apps/imports/{app_id}/check-dependencies")
async def check_dependencies(request: Request, app_id: str,
                             user: ConsoleUser = Editor) -> dict[str, Any]:
    """The plugins the app's last import named that are not installed: all of them (Eddy
    has no plugins), for as long as Dify keeps the list."""
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    stored = await get_container(request).kv.get(import_dependencies_key(app["id"]))
    return {"leaked_dependencies": json.loads(stored) if stored else []}


async def _exported_workflow(request: Request, user: ConsoleUser, app: dict[str, Any],
                             workflow_id: UUID | None) -> dict[str, Any]:
    """The draft (its mode's default if never saved), or the published version named."""
    c = get_container(request)
    if workflow_id is None:
        row = await queries.workflow_draft(c.engine, app["id"])
    else:
        row = await queries.workflow_version(c.engine, app["id"], workflow_id)
        if row is None or row["kind"] != "workflow":
            raise WorkflowNotFound()
    if row is None:
        return {"graph": default_graph(app["mode"]), "features": DEFAULT_FEATURES,
                "environment_variables": [], "conversation_variables": []}
    return {"graph": row["graph"], "features": row["features"],
            "environment_variables": unsealed_environment(
                await workspace_keyring(c.engine, c.settings.SECRET_KEY, user.tenant_id),
                user.tenant_id, row["environment_variables"]),
            "conversation_variables": row["conversation_variables"],
            "dependencies": row.get("dependencies", [])}


@router.get("/apps/{app_id}/export")
async def export_app(request: Request, app_id: str, include_secret: bool = False,
                     workflow_id: Annotated[UUID | None, Query()] = None,
                     user: ConsoleUser = Editor) -> dict[str, str]:
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    c = get_container(request)
    data: dict[str, Any] = {
        "version": CURRENT_DSL_VERSION, "kind": "app",
        "app": {"name": app["name"], "mode": app["mode"], "icon": app["icon"],
                "icon_type": app["icon_type"], "icon_background": app["icon_background"],
                "description": app["description"], "use_icon_as_answer_icon": False},
    }
    if app["mode"] in WORKFLOW_APP_MODES:
        workflow = await _exported_workflow(request, user, app, workflow_id)
        data["dependencies"] = workflow.pop("dependencies", [])
        data["workflow"] = workflow
    else:
        data["model_config"] = await conversation_queries.app_model_config(
            c.engine, app["id"]) or AppModelConfig().model_dump(mode="json")
    try:
        dsl = parse_dsl(data)
    except WorkflowGraphError as error:  # what was saved was checked: a bug if this fails
        raise EddyError(f"The app cannot be exported: {error}") from error
    return {"data": dump_dsl(dsl, include_secrets=include_secret)}
