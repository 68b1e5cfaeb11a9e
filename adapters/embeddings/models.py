"""The embedding models a deployment offers, by (provider, model name), as Dify's datasets
name them (`embedding_model_provider`, `embedding_model`).

Each dataset records its model; indexing and retrieval resolve it here, so two datasets may
use different models side by side. A model's provider object is built on first use and
then shared by every caller in the process (its weights load once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from adapters.embeddings.base import EmbeddingProvider

LOCAL_PROVIDER = "local"  # the models that ship inside Python packages, run in-process


class UnknownEmbeddingModel(ValueError):
    """A (provider, model) this deployment does not offer."""


@dataclass(frozen=True)
class EmbeddingModel:
    provider: str
    name: str
    embeddings: EmbeddingProvider


class WorkspaceModels(Protocol):
    """The models workspaces connect themselves (their model providers), per workspace."""

    def offers(self, provider: str | None) -> bool:
        """Whether `provider` names a provider workspaces connect."""
        ...

    def canonical(self, provider: str) -> str: ...

    async def embeddings(self, tenant_id: UUID, provider: str,
                         model: str) -> EmbeddingProvider: ...


class EmbeddingModels:
    def __init__(self, factories: Mapping[tuple[str, str], Callable[[], EmbeddingProvider]],
                 default: tuple[str, str], workspace: WorkspaceModels | None = None) -> None:
        if default not in factories:
            raise ValueError(f"the default embedding model {default} is not offered")
        self._factories = dict(factories)
        self._default = default
        self._workspace = workspace
        self._built: dict[tuple[str, str], EmbeddingProvider] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, provider: str, *models: EmbeddingProvider) -> EmbeddingModels:
        """Ready-made providers under one provider name; the first is the default."""
        factories = {(provider, m.model_name): (lambda m=m: m) for m in models}
        return cls(factories, (provider, models[0].model_name))

    @property
    def offered(self) -> list[tuple[str, str]]:
        return list(self._factories)

    @property
    def default(self) -> EmbeddingModel:
        return self.get(None, None)

    def key(self, provider: str | None, model: str | None) -> tuple[str, str]:
        """The offered (provider, model) a dataset's settings name. Both unset: the default;
        a model without a provider: the one provider offering it; a provider without a
        model: its default only for the default provider. A workspace's own provider
        (`openai`, `openai_api_compatible`): its canonical name, the model as named."""
        if self._workspace is not None and self._workspace.offers(provider):
            assert provider is not None
            if model is None:
                raise UnknownEmbeddingModel(
                    f"embedding_model is required for provider {provider!r}")
            return self._workspace.canonical(provider), model
        if model is None:
            if provider in (None, self._default[0]):
                return self._default
            raise UnknownEmbeddingModel(f"embedding_model is required for provider {provider!r}")
        if provider is None:
            providers = [p for p, m in self._factories if m == model]
            if len(providers) != 1:
                raise UnknownEmbeddingModel(self._unknown(provider, model))
            provider = providers[0]
        if (provider, model) not in self._factories:
            raise UnknownEmbeddingModel(self._unknown(provider, model))
        return provider, model

    async def resolve(self, tenant_id: UUID, provider: str | None,
                      model: str | None) -> EmbeddingModel:
        """A dataset's model: one this deployment offers, or one its workspace connected
        (not connected there: the workspace lookup's error)."""
        if self._workspace is not None and self._workspace.offers(provider):
            key = self.key(provider, model)
            return EmbeddingModel(provider=key[0], name=key[1],
                                  embeddings=await self._workspace.embeddings(tenant_id, *key))
        return self.get(provider, model)

    def get(self, provider: str | None, model: str | None) -> EmbeddingModel:
        """A model this deployment offers (a workspace's own: `resolve`)."""
        key = self.key(provider, model)
        if key not in self._factories:
            raise UnknownEmbeddingModel(self._unknown(provider, key[1]))
        built = self._built.get(key)
        if built is None:
            with self._lock:
                built = self._built.get(key)
                if built is None:
                    built = self._built[key] = self._factories[key]()
        return EmbeddingModel(provider=key[0], name=key[1], embeddings=built)

    def _unknown(self, provider: str | None, model: str) -> str:
        choices = ", ".join(f"{m} ({p})" for p, m in self._factories)
        return (f"Embedding model {model!r}" + (f" of provider {provider!r}" if provider else "")
                + f" is not available; choose one of: {choices}.")
