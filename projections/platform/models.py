"""The models a workspace connected, read side: what the console lists, and the one lookup
everything that calls a model uses (chat, embeddings, rerank, audio):

    model = await resolve_model(engine, settings.SECRET_KEY, tenant_id, "llm")
    client = model.client()            # an OpenAIProtocolClient for its endpoint and key
    await client.chat(model.model, messages)

`resolve_model` opens the sealed credentials with the workspace's key; the plaintext lives
only in the returned object (kept out of its repr) and is never stored or logged.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.embeddings.openai_compatible import OpenAICompatibleEmbeddings
from adapters.llm.openai_protocol import OpenAIProtocolClient
from adapters.secrets import SecretUnreadable
from projections.keyring import keyring_of
from projections.platform.tables import custom_models, default_models, provider_credentials
from projections.read_cache import NoticedCache, read_through
from projections.reads import autocommit
from schemas.errors import ProviderNotInitialized
from schemas.platform.providers import (
    DIMENSIONS,
    PROVIDERS,
    ProviderSpec,
    credentials_purpose,
    provider_spec,
)

OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"


@dataclass(frozen=True)
class AvailableModel:
    """A model the workspace can use, as the console lists it (credentials masked)."""
    provider: str
    model: str
    model_type: str
    fetch_from: str  # predefined-model | customizable-model
    context_size: int | None
    mode: str | None
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to call: where, with which key, and its limits."""
    tenant_id: UUID
    provider: str  # canonical: "langgenius/openai_api_compatible/openai_api_compatible"
    provider_kind: str  # short: "openai" | "openai_api_compatible"
    model: str
    model_type: str
    endpoint_url: str
    context_size: int | None
    mode: str | None  # llm: "chat" | "completion"
    max_tokens: int | None
    dimensions: int | None  # text-embedding: the vectors' size
    api_key: str = field(repr=False)
    credentials: dict[str, Any] = field(repr=False)  # all of them, opened
    features: tuple[str, ...] = ()  # Dify's model features: "tool-call", "structured-output"

    def client(self, **options: Any) -> OpenAIProtocolClient:
        """A client for this model's endpoint (options: timeout, max_retries, ...)."""
        headers = {}
        organization = self.credentials.get("openai_organization")
        if organization:
            headers["OpenAI-Organization"] = str(organization)
        return OpenAIProtocolClient(self.endpoint_url, self.api_key, extra_headers=headers,
                                    **options)

    def embeddings(self) -> OpenAICompatibleEmbeddings:
        """This text-embedding model as an EmbeddingProvider (indexing, retrieval)."""
        if self.model_type != "text-embedding" or not self.dimensions:
            raise ProviderNotInitialized(f"Model {self.model} is not a text-embedding model "
                                         "of known size; save it again.")
        return OpenAICompatibleEmbeddings(self.endpoint_url, self.api_key, self.model,
                                          self.dimensions)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


async def available_models(engine: AsyncEngine, tenant_id: UUID,
                           model_type: str | None = None) -> list[AvailableModel]:
    """Custom models first (oldest first), then the predefined models of each provider the
    workspace has credentials for, in catalogue order."""
    async with engine.connect() as conn:
        query = select(custom_models).where(custom_models.c.tenant_id == tenant_id)
        if model_type is not None:
            query = query.where(custom_models.c.model_type == model_type)
        custom = (await conn.execute(query.order_by(custom_models.c.created_at,
                                                    custom_models.c.model))).mappings().all()
        credentialed = set((await conn.execute(
            select(provider_credentials.c.provider)
            .where(provider_credentials.c.tenant_id == tenant_id))).scalars())
    found = [AvailableModel(
        row["provider"], row["model"], row["model_type"], "customizable-model",
        _int_or_none(row["credentials_masked"].get("context_size")),
        row["credentials_masked"].get("mode") if row["model_type"] == "llm" else None)
        for row in custom]
    for spec in PROVIDERS:
        if spec.name in credentialed:
            found += [AvailableModel(spec.name, m.model, m.model_type, "predefined-model",
                                     m.context_size, m.mode, m.features)
                      for m in spec.models if model_type in (None, m.model_type)]
    return found


async def configured_providers(engine: AsyncEngine, tenant_id: UUID) -> dict[str, Any]:
    """Per provider name: its masked provider credentials (predefined-model providers) or
    True when it has custom models; absent when not configured."""
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(provider_credentials.c.provider, provider_credentials.c.credentials_masked)
            .where(provider_credentials.c.tenant_id == tenant_id))).all()
        custom = set((await conn.execute(
            select(custom_models.c.provider).where(custom_models.c.tenant_id == tenant_id)
        )).scalars())
    return {**dict.fromkeys(custom, True), **{p: masked for p, masked in rows}}


async def custom_model_masked(engine: AsyncEngine, tenant_id: UUID, provider: str, model: str,
                              model_type: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        return (await conn.execute(select(custom_models.c.credentials_masked).where(
            custom_models.c.tenant_id == tenant_id, custom_models.c.provider == provider,
            custom_models.c.model == model, custom_models.c.model_type == model_type,
        ))).scalar()


async def default_model(engine: AsyncEngine, tenant_id: UUID,
                        model_type: str) -> tuple[str, str] | None:
    """The (provider, model) set as the workspace's default for the type, if any."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(default_models.c.provider, default_models.c.model)
                                  .where(default_models.c.tenant_id == tenant_id,
                                         default_models.c.model_type == model_type))).first()
    return (row[0], row[1]) if row else None


async def stored_credentials(engine: AsyncEngine, secret_key: str, tenant_id: UUID,
                             provider: str, model: str | None = None,
                             model_type: str | None = None) -> dict[str, Any] | None:
    """The opened credentials of a custom model (with `model`) or of a provider."""
    async with autocommit(engine) as conn:
        if model is not None:
            ciphertext = (await conn.execute(select(custom_models.c.credentials_ciphertext)
                                             .where(custom_models.c.tenant_id == tenant_id,
                                                    custom_models.c.provider == provider,
                                                    custom_models.c.model == model,
                                                    custom_models.c.model_type == model_type
                                                    ))).scalar()
        else:
            ciphertext = (await conn.execute(
                select(provider_credentials.c.credentials_ciphertext)
                .where(provider_credentials.c.tenant_id == tenant_id,
                       provider_credentials.c.provider == provider))).scalar()
        if ciphertext is None:
            return None
        keyring = await keyring_of(conn, secret_key, tenant_id)
    try:
        opened: dict[str, Any] = json.loads(keyring.unseal(credentials_purpose(tenant_id),
                                                           ciphertext))
    except SecretUnreadable as exc:
        raise ProviderNotInitialized(
            "The stored provider credentials cannot be opened (SECRET_KEY changed?); "
            "save them again.") from exc
    return opened


async def resolve_model(engine: AsyncEngine, secret_key: str, tenant_id: UUID,
                        model_type: str, provider: str | None = None,
                        model: str | None = None) -> ResolvedModel:
    """The workspace's model of `model_type`: the one named (provider and model), else its
    default, else (as Dify does) the first available one. None of these: Dify's
    `provider_not_initialize` (400)."""
    if provider and model:
        spec = provider_spec(provider)
        if spec is None:
            raise ProviderNotInitialized(f"Provider {provider} does not exist.")
        wanted = (spec.name, model)
    else:
        wanted = await default_model(engine, tenant_id, model_type)
        if wanted is None:
            first = next(iter(await available_models(engine, tenant_id, model_type)), None)
            if first is None:
                raise ProviderNotInitialized(
                    f"No {model_type} model is configured in this workspace. Please go to "
                    "Settings -> Model Provider to add one.")
            wanted = (first.provider, first.model)
        spec = provider_spec(wanted[0])
        assert spec is not None
    name = wanted[1]
    credentials = await stored_credentials(engine, secret_key, tenant_id, spec.name, name,
                                           model_type)
    if credentials is None and not spec.customizable and model_type in spec.model_types:
        credentials = await stored_credentials(engine, secret_key, tenant_id, spec.name)
    if credentials is None:
        raise ProviderNotInitialized(
            f"Model {name} ({model_type}) of provider {spec.name} is not configured in this "
            "workspace.")
    return resolved_model(tenant_id, spec, name, model_type, credentials)


ResolveModel = Callable[[UUID, str | None, str | None], Awaitable[ResolvedModel]]


def model_resolver(engine: Callable[[], AsyncEngine], secret_key: str, model_type: str,
                   cache: NoticedCache[Any, ResolvedModel] | None = None) -> ResolveModel:
    """`resolve_model` for one model type, as processors call it: (tenant, provider, model),
    read on the read-model version active at each call; through `cache` when given (what it
    reads, models, credentials and defaults, is all the workspace's)."""
    async def resolve(tenant_id: UUID, provider: str | None, model: str | None
                      ) -> ResolvedModel:
        async def load() -> tuple[ResolvedModel, tuple[UUID]]:
            return (await resolve_model(engine(), secret_key, tenant_id, model_type, provider,
                                        model), (tenant_id,))

        resolved = await read_through(cache, (tenant_id, provider, model), load)
        assert resolved is not None  # load never misses: it raises
        return resolved
    return resolve


def resolved_model(tenant_id: UUID, spec: ProviderSpec, model: str, model_type: str,
                   credentials: dict[str, Any]) -> ResolvedModel:
    """A model of `spec` with these (opened) credentials: a custom model's own, or the
    provider's for its predefined models."""
    if not spec.customizable:
        predefined = spec.predefined(model, model_type)
        return ResolvedModel(
            tenant_id, spec.name, spec.short_name, model, model_type,
            endpoint_url=str(credentials.get("openai_api_base") or OPENAI_DEFAULT_BASE),
            context_size=predefined.context_size if predefined else None,
            mode=predefined.mode if predefined else ("chat" if model_type == "llm" else None),
            max_tokens=None, dimensions=predefined.dimensions if predefined else None,
            api_key=str(credentials.get("openai_api_key") or ""),
            credentials=credentials, features=predefined.features if predefined else ())
    return ResolvedModel(
        tenant_id, spec.name, spec.short_name, model, model_type,
        endpoint_url=str(credentials["endpoint_url"]),
        context_size=_int_or_none(credentials.get("context_size")),
        mode=str(credentials.get("mode") or "chat") if model_type == "llm" else None,
        max_tokens=_int_or_none(credentials.get("max_tokens_to_sample")),
        dimensions=_int_or_none(credentials.get(DIMENSIONS)),
        api_key=str(credentials.get("api_key") or ""), credentials=credentials,
        features=_custom_features(credentials))


def _custom_features(credentials: dict[str, Any]) -> tuple[str, ...]:
    """What a custom model's credentials say it can do (Dify's form fields)."""
    features = []
    if credentials.get("function_calling_type") in ("function_call", "tool_call"):
        features.append("tool-call")
    if credentials.get("structured_output_support") == "supported":
        features.append("structured-output")
    return tuple(features)


class WorkspaceEmbeddingModels:
    """The workspaces' text-embedding models, for datasets that name one
    (`embedding_model_provider` of a connected provider, `embedding_model`): indexing and
    retrieval embed with it. One client per model and credentials, reused (saving new
    credentials makes a new one)."""

    CACHED = 64

    def __init__(self, engine: Callable[[], AsyncEngine], secret_key: str) -> None:
        self._engine = engine  # the active read-model version's, asked at each lookup
        self._secret_key = secret_key
        self._clients: OrderedDict[tuple[Any, ...], OpenAICompatibleEmbeddings] = OrderedDict()

    def offers(self, provider: str | None) -> bool:
        """Whether the name is a provider workspaces connect (either form of it)."""
        return provider is not None and provider_spec(provider) is not None

    def canonical(self, provider: str) -> str:
        spec = provider_spec(provider)
        assert spec is not None, provider
        return spec.name

    async def embeddings(self, tenant_id: UUID, provider: str,
                         model: str) -> OpenAICompatibleEmbeddings:
        """The model as the workspace connected it; not connected: provider_not_initialize."""
        resolved = await resolve_model(self._engine(), self._secret_key, tenant_id,
                                       "text-embedding", provider, model)
        key = (tenant_id, resolved.provider, resolved.model, resolved.endpoint_url,
               resolved.dimensions, hashlib.sha256(resolved.api_key.encode()).hexdigest())
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = resolved.embeddings()
            while len(self._clients) > self.CACHED:
                self._clients.popitem(last=False)
        self._clients.move_to_end(key)
        return client
