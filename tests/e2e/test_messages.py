"""Chat and completion messages end to end over HTTP, answered by the chat processor
through a fake OpenAI-protocol provider: blocking and streaming (every SSE event and every
blocking answer checked against Dify's spec), conversation memory, input validation,
stop, reconnect with Last-Event-ID, knowledge in the prompt and in retriever_resources."""

from __future__ import annotations

from typing import Any

import httpx

from tests.chat import (
    KEY,
    MODEL,
    Chat,
    app_with_key,
    check_chat_events,
    check_stop_from_another_request,
    connect_provider,
    live_answer,
    sse_events,
)
from tests.e2e.test_knowledge import create_dataset, create_text_document, wait_indexed
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat
from tests.harness import Node, eventually, served
from tests.spec import chat_event_schema, completion_event_schema, validate


async def test_chat_blocking_then_streaming_with_memory(chat: Chat) -> None:
    await chat.configure(pre_prompt="You are a tour guide.")
    first = await chat.send("Where is the old town?")
    assert first.status_code == 200, first.text
    body = first.json()
    validate("ChatCompletionResponse", body)
    assert body["answer"] == "Echo: Where is the old town?" and body["mode"] == "chat"
    usage = body["metadata"]["usage"]
    validate("Usage", usage)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert usage["latency"] > 0 and usage["currency"] == "USD"

    chat.provider.script_chat(ScriptedChat("It opens at nine.", chunks=["It ", "opens ",
                                                                        "at nine."]))
    second = await chat.send("When does it open?", mode="streaming",
                             conversation_id=body["conversation_id"])
    assert second.status_code == 200
    assert second.headers["content-type"].startswith("text/event-stream")
    events = [e for _, e in sse_events(second.content)]
    check_chat_events(events)
    assert [e["event"] for e in events] == ["message"] * 3 + ["message_end"]
    assert "".join(e["answer"] for e in events[:-1]) == "It opens at nine."
    assert {e["conversation_id"] for e in events} == {body["conversation_id"]}
    validate("Usage", events[-1]["metadata"]["usage"])

    # the model saw the system prompt and the earlier turn (memory from the event store)
    sent = chat.provider.chat_requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "You are a tour guide."
    assert sent[1:3] == [{"role": "user", "content": "Where is the old town?"},
                         {"role": "assistant", "content": "Echo: Where is the old town?"}]
    assert chat.provider.chat_requests[-1].body["temperature"] == 0.1


async def test_the_next_message_follows_a_changed_config(chat: Chat) -> None:
    # the gateway keeps each app's config between messages: a change must reach the next one
    for pre_prompt in ("You are a tour guide.", "You are a chef."):
        await chat.configure(pre_prompt=pre_prompt)
        for _ in range(2):
            answer = await chat.send("Hello")
            assert answer.status_code == 200, answer.text
            assert chat.provider.chat_requests[-1].body["messages"][0] == {
                "role": "system", "content": pre_prompt}
    await chat.configure(model={"provider": "openai_api_compatible", "name": "not-connected",
                                "mode": "chat"})
    refused = await chat.send("Hello")
    assert refused.status_code == 400 and refused.json()["code"] == "provider_not_initialize"


async def test_the_next_message_goes_where_the_model_was_moved(chat: Chat) -> None:
    # the worker keeps each workspace's model and credentials between messages: saving the
    # model again (here: another endpoint) must reach the next message
    assert (await chat.send("Hello")).status_code == 200
    with FakeOpenAIServer(api_key=KEY, models={MODEL}) as moved:
        await connect_provider(chat.node, chat.auth, moved)
        asked = chat.provider.calls("/chat/completions"), moved.calls("/chat/completions")
        answer = await chat.send("Hello")
        assert answer.status_code == 200, answer.text
        assert answer.json()["answer"] == "Echo: Hello"
        assert (chat.provider.calls("/chat/completions"),
                moved.calls("/chat/completions")) == (asked[0], asked[1] + 1)


async def test_memory_stays_within_the_context_size(node: Node,
                                                    provider: FakeOpenAIServer) -> None:
    auth = await node.setup_and_login()
    await connect_provider(node, auth, provider, context_size=700)
    app_id, key = await app_with_key(node, auth)
    c = Chat(node, auth, app_id, key, provider)
    await c.configure()
    conversation = None
    for n in range(6):
        answer = await c.send(f"question {n} " + "word " * 40,
                              **({"conversation_id": conversation} if conversation else {}))
        assert answer.status_code == 200, answer.text
        conversation = answer.json()["conversation_id"]
    sent = provider.chat_requests[-1].body["messages"]
    # 700 tokens - 512 for the answer leaves room for the question and one earlier turn
    assert len(sent) == 3 and sent[0]["content"].startswith("question 4")


async def test_inputs_are_validated_against_the_form(chat: Chat) -> None:
    await chat.configure(pre_prompt="Guide for {{city}} in a {{tone}} tone.", user_input_form=[
        {"text-input": {"label": "City", "variable": "city", "required": True,
                        "max_length": 10}},
        {"select": {"label": "Tone", "variable": "tone", "options": ["formal", "casual"]}}])
    for inputs, message in (
        ({}, "city is required in input form"),
        ({"city": "A" * 11}, "city in input form must be less than 10 characters"),
        ({"city": 42}, "city in input form must be a string"),
        ({"city": "Oslo", "tone": "rude"},
         "tone in input form must be one of the following: ['formal', 'casual']"),
    ):
        refused = await chat.send("Hi", inputs=inputs)
        assert refused.status_code == 400, refused.text
        assert refused.json() == {"code": "invalid_param", "status": 400, "message": message}
    assert chat.provider.chat_requests == []
    ok = await chat.send("Hi", inputs={"city": "Oslo", "tone": "casual"})
    assert ok.status_code == 200, ok.text
    assert chat.provider.chat_requests[-1].body["messages"][0]["content"] == \
        "Guide for Oslo in a casual tone."


async def test_wrong_app_kinds_and_missing_things_are_clear_400s(chat: Chat) -> None:
    n = chat.node
    _, agent_key = await app_with_key(n, chat.auth, mode="agent-chat", name="Agent")
    agent = await n.client.post("/v1/chat-messages", headers=agent_key, json={
        "inputs": {}, "query": "Hi", "user": "ann"})
    assert agent.status_code == 400 and agent.json()["code"] == "app_unavailable"
    assert "Agent apps are not supported" in agent.json()["message"]
    wrong = await chat.send("Hi", path="/v1/completion-messages")
    assert wrong.status_code == 400 and wrong.json()["code"] == "not_completion_app"
    missing = await chat.send("Hi", conversation_id="6a8f1c3e-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found", "status": 404,
                              "message": "Conversation Not Exists."}
    assert (await chat.send("", mode="blocking")).status_code == 400

    # another end user cannot continue ann's conversation
    mine = (await chat.send("Hello")).json()["conversation_id"]
    theirs = await n.client.post("/v1/chat-messages", headers=chat.key, json={
        "inputs": {}, "query": "Hi", "user": "bob", "conversation_id": mine})
    assert theirs.status_code == 404


async def test_no_model_is_provider_not_initialize(node: Node) -> None:
    auth = await node.setup_and_login()
    _, key = await app_with_key(node, auth)
    answer = await node.client.post("/v1/chat-messages", headers=key, json={
        "inputs": {}, "query": "Hi", "user": "ann"})
    assert answer.status_code == 400 and answer.json()["code"] == "provider_not_initialize"


async def test_app_without_config_answers_with_the_workspace_default(chat: Chat) -> None:
    answer = await chat.send("Default?")  # never configured
    assert answer.status_code == 200, answer.text
    assert chat.provider.chat_requests[-1].body["model"] == MODEL


async def test_stop_from_another_request_ends_the_stream(chat: Chat) -> None:
    check_chat_events(await check_stop_from_another_request(chat, words=10, chunk_delay=0.3))


async def test_reconnect_with_last_event_id_has_no_gaps_or_repeats(chat: Chat) -> None:
    await chat.configure()
    words = [f"w{i} " for i in range(12)]
    chat.provider.script_chat(ScriptedChat("".join(words), chunks=words, chunk_delay=0.05))
    kept: list[tuple[str, dict[str, Any]]] = []
    async with live_answer(chat, "Words") as events:
        async for event_id, event in events:
            kept.append((str(event_id), event))
            if len(kept) >= 4:
                break  # the client drops the connection
    assert kept[-1][1]["event"] == "message"  # dropped mid-answer
    task_id = kept[0][1]["task_id"]
    url = f"/v1/chat-messages/{task_id}/events"
    rest = await chat.node.client.get(url, headers={**chat.key, "Last-Event-ID": kept[-1][0]},
                                      params={"user": "ann"})
    assert rest.status_code == 200 and rest.headers["content-type"].startswith("text/event-stream")
    later = sse_events(rest.content)
    ids = [i for i, _ in kept + later]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, key=lambda i: tuple(
        map(int, i.split("-"))))
    events = [e for _, e in kept + later]
    check_chat_events(events)
    assert "".join(e["answer"] for e in events if e["event"] == "message") == "".join(words)
    assert events[-1]["event"] == "message_end"
    # from the start without the header; another user's or an unknown task: 404
    again = await chat.node.client.get(url, headers=chat.key, params={"user": "ann"})
    assert [e for _, e in sse_events(again.content)] == events
    assert (await chat.node.client.get(url, headers=chat.key,
                                       params={"user": "bob"})).status_code == 404


async def test_completion_app_blocking_and_streaming(chat: Chat) -> None:
    n = chat.node
    app_id, key = await app_with_key(n, chat.auth, mode="completion", name="Writer")
    c = Chat(n, chat.auth, app_id, key, chat.provider)
    await c.configure(pre_prompt="Write a haiku about {{topic}}.", user_input_form=[
        {"text-input": {"label": "Topic", "variable": "topic", "required": True}}])
    blocking = await c.send("", path="/v1/completion-messages", inputs={"topic": "tea"})
    assert blocking.status_code == 200, blocking.text
    validate("CompletionResponse", blocking.json())
    assert blocking.json()["answer"] == "Echo: Write a haiku about tea."
    assert blocking.json()["mode"] == "completion" and "conversation_id" not in blocking.json()
    streaming = await c.send("", mode="streaming", path="/v1/completion-messages",
                             inputs={"topic": "rain"})
    events = [e for _, e in sse_events(streaming.content)]
    for event in events:
        validate(completion_event_schema(event["event"]), event)
    assert "".join(e["answer"] for e in events if e["event"] == "message") == \
        "Echo: Write a haiku about rain."
    assert (await c.send("Hi", path="/v1/chat-messages")).json()["code"] == "not_chat_app"


async def test_provider_failure_is_an_error_event_and_a_failed_message(chat: Chat) -> None:
    await chat.configure()
    chat.provider.fail_next(10, status=400, path="/chat/completions")
    streamed = await chat.send("Hi", mode="streaming")
    (event,) = [e for _, e in sse_events(streamed.content)]
    validate(chat_event_schema("error"), event)
    assert (event["event"], event["code"], event["status"]) == (
        "error", "completion_request_error", 400)
    blocking = await chat.send("Hi again")
    assert blocking.status_code == 400
    assert blocking.json()["code"] == "completion_request_error"

    async def failed() -> Any:
        r = await chat.node.client.get("/v1/messages", headers=chat.key, params={
            "user": "ann", "conversation_id": event["conversation_id"]})
        data = r.json()["data"] if r.status_code == 200 else []
        return data if data and data[0]["status"] != "pending" else None

    (stored,) = await eventually(failed)
    assert stored["status"] == "error" and stored["error"]


async def test_knowledge_goes_into_the_prompt_and_retriever_resources(chat: Chat) -> None:
    n = chat.node
    dataset_key = (await n.client.post("/console/api/datasets/api-keys",
                                       headers=chat.auth)).json()["token"]
    key = {"Authorization": f"Bearer {dataset_key}"}
    dataset = await create_dataset(n, key, "Travel")
    facts = {"trains.txt": "The night train from Vienna to Venice departs at 21:40.",
             "office.txt": "The office cafeteria serves vegetarian lasagna every Wednesday."}
    documents = {}
    for name, text in facts.items():
        document = await create_text_document(n, key, dataset["id"], name, text)
        await wait_indexed(n.client, key, dataset["id"], document["batch"])
        documents[name] = document["document"]["id"]
    await chat.configure(dataset_configs={"top_k": 1, "datasets": {"datasets": [
        {"dataset": {"enabled": True, "id": dataset["id"]}}]}})

    answer = await chat.send("When does the night train to Venice leave?", mode="streaming")
    events = [e for _, e in sse_events(answer.content)]
    check_chat_events(events)
    (resource,) = events[-1]["metadata"]["retriever_resources"]
    validate("RetrieverResource", resource)
    assert (resource["document_name"], resource["dataset_id"], resource["position"]) == (
        "trains.txt", dataset["id"], 1)
    assert resource["content"] == facts["trains.txt"] and resource["score"] > 0
    system = chat.provider.chat_requests[-1].body["messages"][0]["content"]
    assert facts["trains.txt"] in system and facts["office.txt"] not in system

    # retriever_resource disabled: the knowledge still informs the answer, unnamed; top_k
    # left out is Dify's 4, so both segments go into the prompt, the nearest first
    await chat.configure(retriever_resource={"enabled": False}, dataset_configs={
        "datasets": {"datasets": [{"dataset": {"enabled": True, "id": dataset["id"]}}]}})
    quiet = (await chat.send("What is served on Wednesday?")).json()
    assert quiet["metadata"]["retriever_resources"] == []
    system = chat.provider.chat_requests[-1].body["messages"][0]["content"]
    assert facts["office.txt"] in system and facts["trains.txt"] in system
    assert system.index(facts["office.txt"]) < system.index(facts["trains.txt"])

    # each answer's segments count as hits, as a retrieval's do: the train fact went into
    # both prompts. The counts only grow, so the two documents read one after the other
    # match only once both answers' hits are projected.
    async def hit_counts() -> dict[str, int]:
        counts = {}
        for name, document_id in documents.items():
            r = await n.client.get(
                f"/v1/datasets/{dataset['id']}/documents/{document_id}/segments", headers=key)
            counts[name] = sum(s["hit_count"] for s in r.json()["data"])
        return counts

    await eventually(hit_counts, timeout=60, expect={"trains.txt": 2, "office.txt": 1})


async def test_a_quiet_stream_is_kept_alive_with_pings(chat: Chat) -> None:
    await chat.configure()
    chat.provider.delay_next(10.5)  # the model is slow to start answering
    async with served(chat.node.app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        answer = await http.post("/v1/chat-messages", headers=chat.key, json={
            "inputs": {}, "query": "Slow?", "user": "ann", "response_mode": "streaming"})
    blocks = [b for b in answer.text.split("\n\n") if b.strip()]
    assert blocks[0] == "event: ping"  # Dify's keep-alive: no data, no id
    events = [e for _, e in sse_events(answer.content)]
    check_chat_events(events)
    assert events[-1]["event"] == "message_end"
