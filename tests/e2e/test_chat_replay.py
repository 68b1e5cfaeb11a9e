"""A replay through the real side-effecting consumer, the chat processor (LLM calls to the
fake OpenAI provider, counted): replayed chat messages are acknowledged untouched, while
the other groups on the same topics handle the very same replay."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from contexts.conversation import CHAT
from tests.chat import Chat
from tests.harness import eventually
from tests.integration.conftest import operator_env
from tests.integration.test_cli_operations import eddy, json_lines


def replayed(group: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("eddy_replayed_messages_total",
                                     {"group": group, "outcome": outcome}) or 0.0


async def test_a_replay_never_asks_the_llm_again(chat: Chat,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    operator_env(monkeypatch, chat.node.container.settings)
    await chat.configure(pre_prompt="You are a tour guide.")
    first = await chat.send("Where is the old town?")
    assert first.status_code == 200, first.text
    conversation = first.json()["conversation_id"]
    answer = await chat.send("And the harbour?", conversation_id=conversation)
    assert answer.status_code == 200, answer.text
    calls = chat.provider.calls("/chat/completions")
    assert calls == 2

    code, out, err = await eddy("events", "replay", "--type", "MessageCreated",
                                "--republish", "--dry-run", "--json")
    assert code == 0, err
    [plan] = json_lines(out)
    assert plan["by_type"] == {"MessageCreated": 2}
    assert plan["skipped_by_group"] == {CHAT.name: 2}  # declared side-effecting
    assert plan["by_group"]["projection.console"] == 2

    skipped = replayed(CHAT.name, "skipped")
    projected = replayed("projection.console", "handled")
    code, _, err = await eddy("events", "replay", "--type", "MessageCreated", "--republish")
    assert code == 0, err

    async def delivered() -> bool:
        return (replayed(CHAT.name, "skipped") >= skipped + 2
                and replayed("projection.console", "handled") >= projected + 2)

    await eventually(delivered)
    assert chat.provider.calls("/chat/completions") == calls  # no LLM call repeated
    history = await chat.node.client.get("/v1/messages", headers=chat.key, params={
        "user": "ann", "conversation_id": conversation})
    assert [m["query"] for m in history.json()["data"]] == ["Where is the old town?",
                                                            "And the harbour?"]
