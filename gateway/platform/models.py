"""Model providers of the current workspace, on Dify's console paths, and the Service API's
`GET /v1/workspaces/current/models/model-types/{model_type}`.

Credentials are checked against the provider before anything is recorded (a wrong key is a
400 carrying the provider's own message), then sealed with the workspace's key here: the
command, its events, the topics and the read model only ever see the ciphertext and a
masked copy. A secret sent back as Dify's `[__HIDDEN__]` (or as its masked form) keeps the
stored one.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from adapters.llm.openai_protocol import ProviderError
from gateway.auth import AdminOrOwner, ApiKeyPrincipal, ConsoleUser, CurrentUser, DatasetKey
from gateway.container import GatewayContainer
from gateway.deps import command_gateway, get_container
from projections.keyring import workspace_keyring
from projections.platform import models as pm
from schemas.base import Body, CommandPayload
from schemas.errors import BadRequest
from schemas.platform import commands as cmd
from schemas.platform.providers import (
    DIMENSIONS,
    HIDDEN_VALUE,
    MODEL_TYPES,
    PROVIDERS,
    CredentialField,
    ModelType,
    ProviderSpec,
    credentials_purpose,
    mask_secret,
    masked,
    provider_spec,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/console/api/workspaces/current")
service_router = APIRouter(prefix="/v1/workspaces/current")

VALIDATION_TIMEOUT = 30.0  # seconds per request to the provider while saving credentials
# A valid, silent WAV (44-byte header, no samples): enough for a transcription endpoint to
# accept the key and the model without sending real audio.
_SILENT_WAV = (b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00"
               b"\x00}\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00")


class ProviderCredentialsRequest(Body):
    credentials: dict[str, Any]
    name: str | None = Field(default=None, max_length=30)


class CustomModelRequest(Body):
    model: str = Field(min_length=1, max_length=255)
    model_type: ModelType
    credentials: dict[str, Any] | None = None


class ModelRef(Body):
    model: str = Field(min_length=1, max_length=255)
    model_type: ModelType


class DefaultModelSetting(Body):
    model_type: ModelType
    model: str | None = None
    provider: str | None = None


class DefaultModelsRequest(Body):
    model_settings: list[DefaultModelSetting]


# --- helpers ----------------------------------------------------------------------------------


def _spec(provider: str) -> ProviderSpec:
    spec = provider_spec(provider)
    if spec is None:
        raise BadRequest(f"Provider {provider} does not exist.")
    return spec


def _model_type(value: str) -> str:
    if value not in (*MODEL_TYPES, "moderation"):
        raise BadRequest(f"invalid model type {value}")
    return value


def _checked_form(fields: tuple[CredentialField, ...], given: dict[str, Any],
                  stored: dict[str, Any] | None) -> dict[str, Any]:
    """The credentials as the form defines them: required fields present, selects within
    their options, defaults filled, unknown fields dropped, hidden secrets restored."""
    out: dict[str, Any] = {}
    for f in fields:
        value = given.get(f.variable)
        if f.secret and stored and value in (HIDDEN_VALUE, mask_secret(
                str(stored.get(f.variable) or ""))):
            value = stored.get(f.variable)
        if value in (None, ""):
            if f.required:
                raise BadRequest(f"Variable {f.variable} is required")
            value = f.default
        if value is None:
            continue
        if f.options and value not in f.options:
            raise BadRequest(f"Variable {f.variable} is not in options")
        out[f.variable] = value if isinstance(value, str) else str(value)
    for number in ("context_size", "max_tokens_to_sample"):
        if number in out and not str(out[number]).isdigit():
            raise BadRequest(f"Variable {number} must be a positive integer")
    for url in _URL_FIELDS & out.keys():
        _check_url(url, out[url])
    return out


_URL_FIELDS = {"endpoint_url", "openai_api_base"}


def _check_url(variable: str, url: str) -> None:
    """An http(s) URL with a host: anything else would fail on every later call of the
    model (`http://[x` as a 500), so it is refused when saved."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is what refuses `http://h:x`
    except ValueError:
        raise BadRequest(f"Variable {variable} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname \
            or any(not c.isprintable() or c.isspace() for c in url):
        raise BadRequest(f"Variable {variable} must be an http or https URL")


async def _validate(resolved: pm.ResolvedModel) -> dict[str, str]:
    """One small real request of the model's kind, as Dify's validate_credentials does;
    the provider's refusal becomes a 400 with its message. Returns what it measured (a
    text-embedding model's dimensions)."""
    client = resolved.client(timeout=VALIDATION_TIMEOUT, max_retries=1)
    try:
        match resolved.model_type:
            case "llm" if resolved.mode == "completion":
                await client.post_json("completions", {"model": resolved.model,
                                                       "prompt": "ping", "max_tokens": 5})
            case "llm":
                await client.chat(resolved.model, [{"role": "user", "content": "ping"}],
                                  max_tokens=5)
            case "text-embedding":
                probe = await client.embeddings(resolved.model, ["ping"])
                return {DIMENSIONS: str(len(probe.vectors[0]))}
            case "rerank":
                await client.post_json("rerank", {"model": resolved.model, "query": "ping",
                                                  "documents": ["ping"], "top_n": 1})
            case "tts":
                await client.speech(resolved.model, "ping")
            case "speech2text":
                await client.transcribe(resolved.model, _SILENT_WAV, "ping.wav",
                                        content_type="audio/wav")
            case _:  # provider credentials: does the key open the model list?
                await client.list_models()
    except ProviderError as exc:
        log.info("provider refused credentials", extra={
            "provider": resolved.provider, "model": resolved.model,
            "status_code": exc.status_code})
        raise BadRequest(exc.message or str(exc)) from exc
    finally:
        await client.aclose()
    return {}


async def _sealed(c: GatewayContainer, tenant_id: UUID, credentials: dict[str, Any],
                  fields: tuple[CredentialField, ...]) -> cmd.SealedCredentials:
    keyring = await workspace_keyring(c.engine, c.settings.SECRET_KEY, tenant_id)
    return cmd.SealedCredentials(
        ciphertext=keyring.seal(credentials_purpose(tenant_id), json.dumps(credentials)),
        masked=masked(credentials, fields))


async def _send(request: Request, user: ConsoleUser, payload: CommandPayload) -> None:
    await command_gateway(request).send(payload, aggregate_id=user.tenant_id,
                                        tenant_id=user.tenant_id, actor_id=user.account_id)


def _i18n(text: str) -> dict[str, str]:
    return {"en_US": text, "zh_Hans": text}


def _model_view(m: pm.AvailableModel) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    if m.context_size is not None:
        properties["context_size"] = m.context_size
    if m.mode is not None:
        properties["mode"] = m.mode
    return {"model": m.model, "label": _i18n(m.model), "model_type": m.model_type,
            "features": list(m.features) or None, "fetch_from": m.fetch_from,
            "model_properties": properties, "deprecated": False, "status": "active",
            "load_balancing_enabled": False, "has_invalid_load_balancing_configs": False}


def _provider_view(tenant_id: UUID, spec: ProviderSpec, configured: bool) -> dict[str, Any]:
    model_schema = None
    if spec.customizable:
        model_schema = {"model": {"label": _i18n("Model Name"),
                                  "placeholder": _i18n("Enter your model name")},
                        "credential_form_schemas": [f.form() for f in spec.model_fields]}
    provider_schema = ({"credential_form_schemas": [f.form() for f in spec.provider_fields]}
                       if spec.provider_fields else None)
    return {
        "tenant_id": str(tenant_id), "provider": spec.name, "label": _i18n(spec.label),
        "description": None, "icon_small": None, "icon_small_dark": None, "icon_large": None,
        "background": None, "help": None,
        "supported_model_types": list(spec.model_types),
        "configurate_methods": list(spec.configurate_methods),
        "provider_credential_schema": provider_schema,
        "model_credential_schema": model_schema,
        "preferred_provider_type": "custom",
        "custom_configuration": {"status": "active" if configured else "no-configure"},
        "system_configuration": {"enabled": False, "current_quota_type": None,
                                 "quota_configurations": []},
    }


async def _models_by_type(request: Request, tenant_id: UUID,
                          model_type: str) -> dict[str, Any]:
    found = await pm.available_models(get_container(request).engine, tenant_id,
                                      _model_type(model_type))
    data = []
    for spec in PROVIDERS:
        mine = [_model_view(m) for m in found if m.provider == spec.name]
        if mine:
            data.append({"tenant_id": str(tenant_id), "provider": spec.name,
                         "label": _i18n(spec.label), "icon_small": None,
                         "icon_small_dark": None, "icon_large": None, "status": "active",
                         "models": mine})
    return {"data": data}


# --- providers ------------------------------------------------------------------------------


# Routes with a longer fixed tail come first: `{provider:path}` would swallow ".../models".
@router.get("/model-providers/{provider:path}/models/credentials")
async def get_model_credentials(request: Request, provider: str,
                                model: Annotated[str, Query(min_length=1)],
                                model_type: Annotated[str, Query()],
                                user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    spec = _spec(provider)
    shown = await pm.custom_model_masked(get_container(request).engine, user.tenant_id,
                                         spec.name, model, _model_type(model_type))
    return {"credentials": shown, "load_balancing": {"enabled": False, "configs": []}}


@router.get("/model-providers")
async def list_providers(request: Request, user: ConsoleUser = CurrentUser,
                         model_type: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    configured = await pm.configured_providers(get_container(request).engine, user.tenant_id)
    wanted = _model_type(model_type) if model_type else None
    return {"data": [_provider_view(user.tenant_id, spec, spec.name in configured)
                     for spec in PROVIDERS if wanted in (None, *spec.model_types)]}


@router.get("/model-providers/{provider:path}/credentials")
async def get_provider_credentials(request: Request, provider: str,
                                   user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    spec = _spec(provider)
    configured = await pm.configured_providers(get_container(request).engine, user.tenant_id)
    shown = configured.get(spec.name)
    return {"credentials": shown if isinstance(shown, dict) else None}


@router.post("/model-providers/{provider:path}/credentials", status_code=201)
async def save_provider_credentials(request: Request, provider: str,
                                    body: ProviderCredentialsRequest,
                                    user: ConsoleUser = AdminOrOwner) -> dict[str, str]:
    spec = _spec(provider)
    if not spec.provider_fields:
        raise BadRequest(f"Provider {spec.name} has no provider credentials; add its models "
                         "with their own credentials instead.")
    c = get_container(request)
    stored = await pm.stored_credentials(c.engine, c.settings.SECRET_KEY, user.tenant_id,
                                         spec.name)
    credentials = _checked_form(spec.provider_fields, body.credentials, stored)
    # No model named: the check is whether the key opens the provider's model list.
    await _validate(pm.resolved_model(user.tenant_id, spec, "", "", credentials))
    await _send(request, user, cmd.SaveProviderCredentials(
        workspace_id=user.tenant_id, provider=spec.name,
        credentials=await _sealed(c, user.tenant_id, credentials, spec.provider_fields)))
    return {"result": "success"}


@router.delete("/model-providers/{provider:path}/credentials", status_code=204)
async def delete_provider_credentials(request: Request, provider: str,
                                      user: ConsoleUser = AdminOrOwner) -> Response:
    spec = _spec(provider)
    await _send(request, user, cmd.DeleteProviderCredentials(workspace_id=user.tenant_id,
                                                             provider=spec.name))
    return Response(status_code=204)


# --- models ---------------------------------------------------------------------------------


@router.get("/model-providers/{provider:path}/models")
async def list_provider_models(request: Request, provider: str,
                               user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    spec = _spec(provider)
    found = await pm.available_models(get_container(request).engine, user.tenant_id)
    return {"data": [{**_model_view(m), "provider": _provider_view(
        user.tenant_id, spec, True) | {"models": None}}
        for m in found if m.provider == spec.name]}


@router.post("/model-providers/{provider:path}/models")
async def save_custom_model(request: Request, provider: str, body: CustomModelRequest,
                            user: ConsoleUser = AdminOrOwner) -> dict[str, str]:
    spec = _spec(provider)
    if not spec.customizable:
        raise BadRequest(f"Provider {spec.name} does not support customizable models; save "
                         "its provider credentials instead.")
    if body.model_type not in spec.model_types:
        raise BadRequest(f"Provider {spec.name} has no {body.model_type} models.")
    if body.credentials is None:
        raise BadRequest("credentials is required")
    c = get_container(request)
    stored = await pm.stored_credentials(c.engine, c.settings.SECRET_KEY, user.tenant_id,
                                         spec.name, body.model, body.model_type)
    credentials = _checked_form(spec.model_fields, body.credentials, stored)
    credentials |= await _validate(pm.resolved_model(user.tenant_id, spec, body.model,
                                                     body.model_type, credentials))
    await _send(request, user, cmd.SaveCustomModel(
        workspace_id=user.tenant_id, provider=spec.name, model=body.model,
        model_type=body.model_type,
        credentials=await _sealed(c, user.tenant_id, credentials, spec.model_fields)))
    return {"result": "success"}


@router.delete("/model-providers/{provider:path}/models", status_code=204)
async def delete_custom_model(request: Request, provider: str, body: ModelRef,
                              user: ConsoleUser = AdminOrOwner) -> Response:
    spec = _spec(provider)
    await _send(request, user, cmd.DeleteCustomModel(
        workspace_id=user.tenant_id, provider=spec.name, model=body.model,
        model_type=body.model_type))
    return Response(status_code=204)


@router.get("/models/model-types/{model_type}")
async def console_models_by_type(request: Request, model_type: str,
                                 user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    return await _models_by_type(request, user.tenant_id, model_type)


@service_router.get("/models/model-types/{model_type}")
async def service_models_by_type(request: Request, model_type: str,
                                 key: ApiKeyPrincipal = DatasetKey) -> dict[str, Any]:
    return await _models_by_type(request, key.tenant_id, model_type)


# --- default models ---------------------------------------------------------------------------


@router.get("/default-model")
async def get_default_model(request: Request, model_type: Annotated[str, Query()],
                            user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    found = await pm.default_model(get_container(request).engine, user.tenant_id,
                                   _model_type(model_type))
    if found is None:
        return {"data": None}
    spec = _spec(found[0])
    return {"data": {"model": found[1], "model_type": model_type, "provider": {
        "tenant_id": str(user.tenant_id), "provider": spec.name, "label": _i18n(spec.label),
        "icon_small": None, "icon_large": None,
        "supported_model_types": list(spec.model_types)}}}


@router.post("/default-model")
async def set_default_models(request: Request, body: DefaultModelsRequest,
                             user: ConsoleUser = AdminOrOwner) -> dict[str, str]:
    # As Dify: a setting without a provider is skipped.
    settings = [cmd.DefaultModel(model_type=s.model_type, provider=_spec(s.provider).name,
                                 model=s.model)
                for s in body.model_settings if s.provider and s.model]
    if settings:
        await _send(request, user, cmd.SetDefaultModels(workspace_id=user.tenant_id,
                                                        settings=settings))
    return {"result": "success"}

