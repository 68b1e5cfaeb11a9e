"""Real Dify exports run, not only import: the advanced-chat app Dify 0.2.0 exported
(start → llm → answer, with memory) is imported, its model node pointed at the workspace's
configured model as a user does in the editor (the export names a provider Eddy lacks),
published, and answers two turns through /v1/chat-messages with the fake OpenAI-protocol
server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chat import KEY, MODEL, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node

EXPORT = Path(__file__).parent.parent / "fixtures" / "dify_dsl" / \
    "artifact_advanced_chat_0.2.0.yml"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY, models={MODEL}) as fake:
        yield fake


async def test_a_real_advanced_chat_export_imports_and_answers(
        node: Node, provider: FakeOpenAIServer) -> None:
    auth = await node.setup_and_login()
    await connect_provider(node, auth, provider)
    imported = await node.client.post("/console/api/apps/imports", headers=auth, json={
        "mode": "yaml-content", "yaml_content": EXPORT.read_text()})
    assert imported.status_code == 200, imported.text
    assert imported.json()["status"] == "completed-with-warnings"  # an older minor version
    app_id = imported.json()["app_id"]
    base = f"/console/api/apps/{app_id}/workflows"

    draft = (await node.client.get(f"{base}/draft", headers=auth)).json()
    models = [n["data"] for n in draft["graph"]["nodes"] if n["data"]["type"] == "llm"]
    assert [m["model"]["provider"] for m in models] == [
        "langgenius/volcengine_maas/volcengine_maas"]
    for data in models:
        data["model"] = {**data["model"], "provider": "openai_api_compatible", "name": MODEL}
    saved = await node.client.post(f"{base}/draft", headers=auth, json={
        "graph": draft["graph"], "features": draft["features"], "hash": draft["hash"],
        "environment_variables": draft["environment_variables"],
        "conversation_variables": draft["conversation_variables"]})
    assert saved.status_code == 200, saved.text
    assert (await node.client.post(f"{base}/publish", headers=auth, json={})).status_code == 200
    key = await node.client.post(f"/console/api/apps/{app_id}/api-keys", headers=auth)
    bearer = {"Authorization": f"Bearer {key.json()['token']}"}

    provider.script_chat("Here is your card.", "And a second one.")
    first = await node.client.post("/v1/chat-messages", headers=bearer, json={
        "inputs": {}, "query": "Make me a card", "user": "ann", "response_mode": "blocking"})
    assert first.status_code == 200, first.text
    assert first.json()["answer"] == "Here is your card."
    second = await node.client.post("/v1/chat-messages", headers=bearer, json={
        "inputs": {}, "query": "Another", "user": "ann", "response_mode": "blocking",
        "conversation_id": first.json()["conversation_id"]})
    assert second.json()["answer"] == "And a second one."
    # the export's system prompt, then (its memory) the first turn, then the new query
    sent = provider.chat_requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "你是一个小助手"}
    assert [m["content"] for m in sent[1:]] == ["Make me a card", "Here is your card.",
                                                "Another"]
