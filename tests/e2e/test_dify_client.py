"""Dify's official Python SDK (`dify_client` 0.1.10, unmodified) against Eddy over real HTTP:
chat (blocking and streaming), completion, conversations, history, rename, feedback,
parameters and file upload. The SDK is synchronous (`requests`), so it runs in threads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from dify_client import ChatClient, CompletionClient

from tests.chat import Chat, app_with_key
from tests.harness import eventually, served


def stream_events(response: Any) -> list[dict[str, Any]]:
    """The SSE `data:` events of a streamed SDK response (pings skipped)."""
    return [json.loads(line[len(b"data: "):]) for line in response.iter_lines()
            if line.startswith(b"data: ")]


async def test_official_sdk_chat_completion_conversations_feedback(chat: Chat) -> None:
    await chat.configure(opening_statement="Welcome!", user_input_form=[
        {"text-input": {"label": "Name", "variable": "name", "required": False}}])
    _, completion_key = await app_with_key(chat.node, chat.auth, mode="completion", name="Pen")
    async with served(chat.node.app) as url:
        client = ChatClient(chat.key["Authorization"].removeprefix("Bearer "))
        client.base_url = f"{url}/v1"
        writer = CompletionClient(completion_key["Authorization"].removeprefix("Bearer "))
        writer.base_url = f"{url}/v1"

        def call(method: Any, *args: Any, **kwargs: Any) -> Any:
            return asyncio.to_thread(method, *args, **kwargs)

        params = await call(client.get_application_parameters, "ann")
        assert params.status_code == 200 and params.json()["opening_statement"] == "Welcome!"

        first = await call(client.create_chat_message, {"name": "Ann"}, "Hello there", "ann")
        assert first.status_code == 200, first.text
        assert first.json()["answer"] == "Echo: Hello there"
        conversation = first.json()["conversation_id"]

        streamed = await call(client.create_chat_message, {}, "And again", "ann",
                              response_mode="streaming", conversation_id=conversation)
        events = await asyncio.to_thread(stream_events, streamed)
        assert events[-1]["event"] == "message_end"
        assert "".join(e["answer"] for e in events if e["event"] == "message") == \
            "Echo: And again"

        async def history() -> Any:
            r = await call(client.get_conversation_messages, "ann", conversation)
            data = r.json()["data"]
            return data if len(data) == 2 and all(m["status"] == "normal" for m in data) \
                else None

        messages = await eventually(history)
        assert [m["query"] for m in messages] == ["Hello there", "And again"]
        older = await call(client.get_conversation_messages, "ann", conversation,
                           first_id=messages[1]["id"], limit=1)
        assert [m["query"] for m in older.json()["data"]] == ["Hello there"]

        listed = await call(client.get_conversations, "ann", limit=5)
        assert [c["id"] for c in listed.json()["data"]] == [conversation]
        renamed = await call(client.rename_conversation, conversation, "Greetings", "ann")
        assert renamed.status_code == 200 and renamed.json()["name"] == "Greetings"

        liked = await call(client.message_feedback, messages[0]["id"], "like", "ann")
        assert liked.json() == {"result": "success"}
        feedback = await chat.node.client.get("/v1/app/feedbacks", headers=chat.key)
        assert [f["rating"] for f in feedback.json()["data"]] == ["like"]

        uploaded = await call(client.file_upload, "ann",
                              {"file": ("notes.txt", b"hello", "text/plain")})
        assert uploaded.status_code == 201, uploaded.text
        assert (uploaded.json()["name"], uploaded.json()["size"]) == ("notes.txt", 5)

        written = await call(writer.create_completion_message, {}, "blocking", "ann")
        assert written.status_code == 200, written.text
        assert written.json()["mode"] == "completion" and written.json()["answer"]
        streamed_text = await call(writer.create_completion_message, {}, "streaming", "ann")
        events = await asyncio.to_thread(stream_events, streamed_text)
        assert events[-1]["event"] == "message_end"
