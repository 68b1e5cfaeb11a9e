"""A model provider that accepts requests and never answers: the message it hangs fails
visibly within its budget (PROVIDER_* settings), a blocking request is answered 202 past
CHAT_BLOCKING_TIMEOUT_SECONDS instead of hanging, and the conversation's next message is
answered once the hung one failed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chat import Chat
from tests.e2e.test_annotations import connect_embeddings
from tests.e2e.test_knowledge import create_text_document, wait_indexed
from tests.e2e.test_messages import check_chat_events, sse_events
from tests.harness import eventually

QUESTION = "When does the ferry to the island leave?"


async def empty_dataset_on_the_provider(chat: Chat) -> tuple[dict[str, str], str]:
    """(dataset key, id) of a new dataset embedded by the workspace's model on the fake."""
    await connect_embeddings(chat)
    token = await chat.node.client.post("/console/api/datasets/api-keys", headers=chat.auth)
    key = {"Authorization": f"Bearer {token.json()['token']}"}
    created = await chat.node.client.post("/v1/datasets", headers=key, json={
        "name": "Timetable", "indexing_technique": "high_quality",
        "embedding_model_provider": "openai_api_compatible", "embedding_model": "bge-m3"})
    assert created.status_code == 200, created.text
    dataset_id: str = created.json()["id"]
    return key, dataset_id


async def dataset_on_the_provider(chat: Chat) -> str:
    """A dataset embedded by the workspace's model on the fake provider, indexed."""
    key, dataset_id = await empty_dataset_on_the_provider(chat)
    document = await create_text_document(chat.node, key, dataset_id, "ferries",
                                          "The ferry to the island leaves at nine.")
    await wait_indexed(chat.node.client, key, dataset_id, document["batch"])
    return dataset_id


async def followed(chat: Chat, events_url: str) -> list[dict[str, Any]] | None:
    """The task's events once it ended (its closing event read), else None."""
    r = await chat.node.client.get(events_url, headers=chat.key, timeout=30)
    events = [e for _, e in sse_events(r.content) if e is not None]
    return events if events and events[-1]["event"] in ("message_end", "error") else None


@pytest.mark.settings(PROVIDER_READ_TIMEOUT=30.0, PROVIDER_REQUEST_DEADLINE=2.0,
                      PROVIDER_MAX_RETRIES=0, CHAT_BLOCKING_TIMEOUT_SECONDS=0.5)
async def test_a_hung_embedding_endpoint_fails_the_message_and_the_next_follows(
        chat: Chat) -> None:
    dataset_id = await dataset_on_the_provider(chat)
    await chat.configure(dataset_configs={"top_k": 1, "datasets": {"datasets": [
        {"dataset": {"enabled": True, "id": dataset_id}}]}})
    chat.provider.hang_next(1, "/embeddings")  # the first question's search hangs

    blocking = await chat.send(QUESTION)
    assert blocking.status_code == 202, blocking.text  # not held past the server's limit
    task = blocking.json()
    # the conversation's next question, sent while the first one hangs
    second = await chat.send("And the last one back?", mode="streaming",
                             conversation_id=task["conversation_id"])
    second_events = [e for _, e in sse_events(second.content) if e is not None]

    first_events = await eventually(lambda: followed(chat, task["events_url"]), timeout=60)
    check_chat_events(first_events)
    failure = first_events[-1]
    assert failure["event"] == "error" and failure["code"] == "completion_request_error"
    assert "Knowledge retrieval failed" in failure["message"]
    assert "no answer from" in failure["message"]  # within the deadline, not the read timeout
    assert failure["message_id"] == task["message_id"]
    check_chat_events(second_events)
    assert second_events[-1]["event"] == "message_end"
    assert "".join(e["answer"] for e in second_events if e["event"] == "message") == \
        "Echo: And the last one back?"
    # the hung question went to the model never; the next one once
    assert chat.provider.calls("/chat/completions") == 1

    messages = await chat.node.client.get("/v1/messages", headers=chat.key, params={
        "conversation_id": task["conversation_id"], "user": "ann"})
    assert messages.status_code == 200, messages.text
    by_id = {m["id"]: m for m in messages.json()["data"]}
    assert by_id[task["message_id"]]["status"] == "error"
    assert by_id[task["message_id"]]["error"]


@pytest.mark.settings(PROVIDER_READ_TIMEOUT=30.0, PROVIDER_REQUEST_DEADLINE=1.0,
                      PROVIDER_MAX_RETRIES=0, CONSUMER_MAX_ATTEMPTS=2)
async def test_a_hung_embedding_endpoint_fails_the_indexing_attempt(chat: Chat) -> None:
    key, dataset_id = await empty_dataset_on_the_provider(chat)
    chat.provider.hang_next(100, "/embeddings")
    before = chat.provider.calls("/embeddings")
    document = await create_text_document(chat.node, key, dataset_id, "ferries",
                                          "The ferry to the island leaves at nine.")
    (status,) = await wait_indexed(chat.node.client, key, dataset_id, document["batch"],
                                   expect="error")
    assert "no answer from" in status["error"]
    assert chat.provider.calls("/embeddings") == before + 2  # one per attempt, no more


@pytest.mark.settings(PROVIDER_READ_TIMEOUT=30.0, PROVIDER_REQUEST_DEADLINE=1.0,
                      PROVIDER_MAX_RETRIES=0)
async def test_a_retrieval_whose_embedding_hangs_fails_with_a_clear_error(chat: Chat) -> None:
    dataset_id = await dataset_on_the_provider(chat)
    token = await chat.node.client.post("/console/api/datasets/api-keys", headers=chat.auth)
    key = {"Authorization": f"Bearer {token.json()['token']}"}
    chat.provider.hang_next(1, "/embeddings")
    r = await chat.node.client.post(f"/v1/datasets/{dataset_id}/retrieve", headers=key,
                                    json={"query": QUESTION})
    assert r.status_code == 400, r.text  # not a 503 asking to retry, not a 500
    assert r.json()["code"] == "completion_request_error"
    assert "no answer from the provider's embeddings endpoint" in r.json()["message"]
