"""One OpenAI-protocol client per endpoint and key for the life of the process: a new client
per call would pay for its TLS context and connection pool every time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from adapters.llm.openai_protocol import OpenAIProtocolClient


class CallableModel(Protocol):
    """A resolved model: where it is served, with which key, and how to connect."""

    @property
    def endpoint_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    def client(self) -> OpenAIProtocolClient: ...


@dataclass
class ModelClients:
    _clients: dict[tuple[str, str], OpenAIProtocolClient] = field(default_factory=dict)

    def client_for(self, model: CallableModel) -> OpenAIProtocolClient:
        key = (model.endpoint_url, model.api_key)
        if key not in self._clients:
            self._clients[key] = model.client()
        return self._clients[key]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
