"""Chat apps for tests: a workspace with a model provider (the fake OpenAI server), an app
and its Service API key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node

KEY = "sk-fake-provider-key-0123456789"
MODEL = "qwen2.5"
PROVIDERS = "/console/api/workspaces/current/model-providers"


@dataclass
class Chat:
    node: Node
    auth: dict[str, str]
    app_id: str
    key: dict[str, str]
    provider: FakeOpenAIServer

    async def configure(self, **config: Any) -> None:
        body = {"model": {"provider": "openai_api_compatible", "name": MODEL, "mode": "chat",
                          "completion_params": {"temperature": 0.1}}, **config}
        saved = await self.node.client.post(f"/console/api/apps/{self.app_id}/model-config",
                                            headers=self.auth, json=body)
        assert saved.status_code == 200, saved.text

    async def send(self, query: str, mode: str = "blocking", path: str = "/v1/chat-messages",
                   **body: Any) -> Any:
        return await self.node.client.post(path, headers=self.key, json={
            "inputs": {}, "query": query, "user": "ann", "response_mode": mode, **body})


async def connect_provider(node: Node, auth: dict[str, str], provider: FakeOpenAIServer,
                           context_size: int = 32768) -> None:
    saved = await node.client.post(
        f"{PROVIDERS}/openai_api_compatible/models", headers=auth, json={
            "model": MODEL, "model_type": "llm", "credentials": {
                "api_key": KEY, "endpoint_url": provider.base_url, "mode": "chat",
                "context_size": str(context_size), "max_tokens_to_sample": "512"}})
    assert saved.status_code == 200, saved.text


async def app_with_key(node: Node, auth: dict[str, str], mode: str = "chat",
                       name: str = "City guide") -> tuple[str, dict[str, str]]:
    app = await node.client.post("/console/api/apps", headers=auth,
                                 json={"name": name, "mode": mode, "icon": "🏙"})
    assert app.status_code == 201, app.text
    app_id = app.json()["id"]
    key = await node.client.post(f"/console/api/apps/{app_id}/api-keys", headers=auth)
    return app_id, {"Authorization": f"Bearer {key.json()['token']}"}
