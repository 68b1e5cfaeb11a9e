"""An app's configuration: the console's model config and site settings, and the Service
API's /parameters and /site, which answer from them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from config import Settings
from gateway.auth import ApiKeyPrincipal, AppKey, AppReader, ConsoleUser, Editor
from gateway.deps import command_gateway, get_container, maybe_uuid, parse_id
from gateway.platform.console import console_app
from gateway.platform.service import app_of_key
from projections.conversation import queries
from projections.knowledge import queries as knowledge
from schemas.conversation import commands as cmd
from schemas.conversation.config import (
    SITE_FIELDS,
    AppModelConfig,
    CompletionParams,
    SiteSettings,
)
from schemas.conversation.naming import app_config_id_for
from schemas.errors import AppNotFound, BadRequest

console_router = APIRouter(prefix="/console/api")
service_router = APIRouter(prefix="/v1")
CONFIGURABLE_MODES = ("chat", "completion", "agent-chat")
# (request, app) -> (features, user_input_form) of an app mode another context configures:
# the workflow context registers workflow and advanced-chat's (its published version's
# features and start node), which /parameters answers from as Dify's AppParameterApi does.
AppFormSource = Callable[[Request, dict[str, Any]],
                         Awaitable[tuple[dict[str, Any], list[dict[str, Any]]]]]
APP_FORM_SOURCES: dict[str, AppFormSource] = {}


async def app_config(request: Request, app: dict[str, Any]) -> AppModelConfig:
    """The app's model config as saved; an app never configured runs with the defaults."""
    stored = await queries.app_model_config(get_container(request).engine, app["id"])
    return AppModelConfig.model_validate(stored) if stored is not None else AppModelConfig()


# --- console -------------------------------------------------------------------------------


@console_router.post("/apps/{app_id}/model-config")
async def configure_model(request: Request, app_id: str, body: dict[str, Any],
                          user: ConsoleUser = Editor) -> dict[str, str]:
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    if app["mode"] not in CONFIGURABLE_MODES:
        raise BadRequest(f"A {app['mode']} app is configured by its workflow, not a model config.")
    try:
        config = AppModelConfig.model_validate(body)
        if config.model:
            CompletionParams.model_validate(config.model.completion_params)
    except ValidationError as exc:
        raise BadRequest(_describe(exc)) from None
    engine = get_container(request).engine
    for dataset_id in config.dataset_configs.dataset_ids():
        parsed = maybe_uuid(dataset_id)
        if parsed is None or await knowledge.dataset(engine, user.tenant_id, parsed) is None:
            raise BadRequest(f"Dataset {dataset_id} not found.")
    await command_gateway(request).send(
        cmd.ConfigureAppModel(app_id=app["id"], config=config.model_dump(mode="json")),
        aggregate_id=app_config_id_for(app["id"]), tenant_id=user.tenant_id,
        actor_id=user.account_id)
    return {"result": "success"}


@console_router.get("/apps/{app_id}/model-config")
async def get_model_config(request: Request, app_id: str,
                           user: ConsoleUser = AppReader) -> dict[str, Any]:
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    return (await app_config(request, app)).model_dump(mode="json")


def site_view(app: dict[str, Any], site: dict[str, Any]) -> dict[str, Any]:
    """Dify's site fields: what was set, the rest from the app (title, icon, description)."""
    defaults: dict[str, Any] = {
        "title": app["name"], "icon_type": app["icon_type"], "icon": app["icon"],
        "icon_background": app["icon_background"], "description": app["description"],
        "default_language": "en-US", "chat_color_theme": "",
        "chat_color_theme_inverted": False, "customize_domain": "", "copyright": "",
        "privacy_policy": "", "custom_disclaimer": "", "customize_token_strategy": "not_allow",
        "prompt_public": False, "show_workflow_steps": True, "use_icon_as_answer_icon": False,
        "input_placeholder": None,
    }
    view = {name: site.get(name, defaults[name]) for name in SITE_FIELDS}
    view["icon_url"] = view["icon"] if view["icon_type"] in ("image", "link") else None
    return view


@console_router.get("/apps/{app_id}/site")
async def get_site(request: Request, app_id: str,
                   user: ConsoleUser = AppReader) -> dict[str, Any]:
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    site = await queries.app_site(get_container(request).engine, app["id"])
    return {"app_id": str(app["id"]), **site_view(app, site)}


@console_router.post("/apps/{app_id}/site")
async def configure_site(request: Request, app_id: str, body: SiteSettings,
                         user: ConsoleUser = Editor) -> dict[str, Any]:
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    await command_gateway(request).send(
        cmd.ConfigureAppSite(app_id=app["id"], changes=changes),
        aggregate_id=app_config_id_for(app["id"]), tenant_id=user.tenant_id,
        actor_id=user.account_id)
    return await get_site(request, app_id, user)


# --- Service API ---------------------------------------------------------------------------


@service_router.get("/parameters")
async def parameters(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await app_of_key(request, key)
    settings = get_container(request).settings
    source = APP_FORM_SOURCES.get(app["mode"])
    if source is not None:
        features, form = await source(request, app)
        return {
            "opening_statement": features.get("opening_statement"),
            "suggested_questions": features.get("suggested_questions", []),
            "suggested_questions_after_answer": features.get(
                "suggested_questions_after_answer", {"enabled": False}),
            "speech_to_text": features.get("speech_to_text", {"enabled": False}),
            "text_to_speech": features.get("text_to_speech", {"enabled": False}),
            "retriever_resource": features.get("retriever_resource", {"enabled": False}),
            "annotation_reply": features.get("annotation_reply", {"enabled": False}),
            "more_like_this": features.get("more_like_this", {"enabled": False}),
            "user_input_form": form,
            "sensitive_word_avoidance": features.get(
                "sensitive_word_avoidance", {"enabled": False, "type": "", "configs": []}),
            "file_upload": features.get("file_upload", AppModelConfig().file_upload.model_dump(
                mode="json")),
            "system_parameters": _system_parameters(settings),
        }
    config = await app_config(request, app)
    return {
        "opening_statement": config.opening_statement,
        "suggested_questions": config.suggested_questions,
        "suggested_questions_after_answer": config.suggested_questions_after_answer.model_dump(),
        "speech_to_text": config.speech_to_text.model_dump(),
        "text_to_speech": config.text_to_speech.model_dump(),
        "retriever_resource": config.retriever_resource.model_dump(),
        "annotation_reply": {"enabled": False},
        "more_like_this": config.more_like_this.model_dump(),
        "sensitive_word_avoidance": {"enabled": config.sensitive_word_avoidance.enabled},
        "user_input_form": [{kind: control.model_dump(mode="json", exclude_none=True)}
                            for kind, control in config.form_controls()],
        "file_upload": config.file_upload.model_dump(mode="json"),
        "system_parameters": _system_parameters(settings),
    }


def _system_parameters(settings: Settings) -> dict[str, int]:
    return {
        "file_size_limit": settings.UPLOAD_FILE_SIZE_LIMIT,
        "image_file_size_limit": settings.UPLOAD_IMAGE_FILE_SIZE_LIMIT,
        "audio_file_size_limit": settings.UPLOAD_AUDIO_FILE_SIZE_LIMIT,
        "video_file_size_limit": settings.UPLOAD_VIDEO_FILE_SIZE_LIMIT,
        "workflow_file_upload_limit": 10,
    }


@service_router.get("/site")
async def site(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await app_of_key(request, key)
    view = site_view(app, await queries.app_site(get_container(request).engine, app["id"]))
    return {name: view[name] for name in (
        "title", "chat_color_theme", "chat_color_theme_inverted", "icon_type", "icon",
        "icon_background", "icon_url", "description", "copyright", "privacy_policy",
        "input_placeholder", "custom_disclaimer", "default_language", "show_workflow_steps",
        "use_icon_as_answer_icon")}


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)
