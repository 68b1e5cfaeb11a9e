"""Conversations, history, feedback and end users over HTTP (Service API): paging as Dify
pages, renames, deletions, feedback; end users scoped to their app and their user."""

from __future__ import annotations

from typing import Any

from tests.chat import Chat, app_with_key
from tests.harness import eventually
from tests.spec import validate


async def ask(c: Chat, query: str, user: str = "ann", conversation: str | None = None,
              key: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": {}, "query": query, "user": user}
    if conversation:
        body["conversation_id"] = conversation
    answer = await c.node.client.post("/v1/chat-messages", headers=key or c.key, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def get(c: Chat, path: str, key: dict[str, str] | None = None, **params: Any) -> Any:
    return await c.node.client.get(path, headers=key or c.key, params=params)


async def settled(c: Chat, conversation: str, count: int, user: str = "ann") -> list[Any]:
    """The conversation's history once all its messages are projected as answered."""
    async def check() -> list[Any] | None:
        r = await get(c, "/v1/messages", user=user, conversation_id=conversation, limit=100)
        data = r.json()["data"] if r.status_code == 200 else []
        return data if len(data) == count and all(m["status"] == "normal" for m in data) \
            else None

    return await eventually(check)  # type: ignore[no-any-return]


async def test_conversation_list_history_rename_delete(chat: Chat) -> None:
    first = await ask(chat, "First question")
    conversation = first["conversation_id"]
    for n in range(4):
        await ask(chat, f"Follow-up {n}", conversation=conversation)
    others = [(await ask(chat, f"Topic {n}"))["conversation_id"] for n in range(2)]
    await ask(chat, "Bob here", user="bob")
    await settled(chat, conversation, 5)

    # history: newest page first, each page oldest first
    newest = (await get(chat, "/v1/messages", user="ann", conversation_id=conversation,
                        limit=2)).json()
    validate("ConversationHistoryResponse", newest)
    assert [m["query"] for m in newest["data"]] == ["Follow-up 2", "Follow-up 3"]
    assert newest["has_more"] is True and newest["limit"] == 2
    older = (await get(chat, "/v1/messages", user="ann", conversation_id=conversation,
                       limit=3, first_id=newest["data"][0]["id"])).json()
    assert [m["query"] for m in older["data"]] == ["First question", "Follow-up 0",
                                                   "Follow-up 1"]
    assert older["has_more"] is False
    assert older["data"][0]["answer"] == "Echo: First question"
    assert (await get(chat, "/v1/messages", user="bob",
                      conversation_id=conversation)).status_code == 404

    async def listed(**params: Any) -> dict[str, Any]:
        r = await get(chat, "/v1/conversations", user="ann", **params)
        assert r.status_code == 200, r.text
        validate("ConversationsListResponse", r.json())
        return r.json()  # type: ignore[no-any-return]

    everything = await eventually(lambda: _all_three(listed))
    assert {c["id"] for c in everything["data"]} == {conversation, *others}
    page = await listed(limit=2, sort_by="created_at")
    assert [c["id"] for c in page["data"]] == [conversation, others[0]] and page["has_more"]
    rest = await listed(limit=2, sort_by="created_at", last_id=page["data"][-1]["id"])
    assert [c["id"] for c in rest["data"]] == [others[1]] and not rest["has_more"]
    assert (await get(chat, "/v1/conversations", user="ann",
                      last_id="6a8f1c3e-0000-4000-8000-000000000000")).status_code == 404
    bobs = (await get(chat, "/v1/conversations", user="bob")).json()["data"]
    assert [c["name"] for c in bobs] == ["Bob here"]

    variables = await get(chat, f"/v1/conversations/{conversation}/variables", user="ann")
    validate("ConversationVariablesResponse", variables.json())
    assert variables.json()["data"] == []  # a chat app's conversations have none
    assert (await get(chat, f"/v1/conversations/{conversation}/variables",
                      user="bob")).status_code == 404
    renamed = await chat.node.client.post(f"/v1/conversations/{conversation}/name",
                                          headers=chat.key, json={"name": "Trip", "user": "ann"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Trip"
    auto = await chat.node.client.post(f"/v1/conversations/{others[0]}/name", headers=chat.key,
                                       json={"auto_generate": True, "user": "ann"})
    assert auto.json()["name"] == "Topic 0"
    stolen = await chat.node.client.post(f"/v1/conversations/{conversation}/name",
                                         headers=chat.key, json={"name": "x", "user": "bob"})
    assert stolen.status_code == 404

    deleted = await chat.node.client.request(
        "DELETE", f"/v1/conversations/{others[1]}", headers=chat.key, json={"user": "ann"})
    assert deleted.status_code == 204
    remaining = await listed()
    assert {c["id"] for c in remaining["data"]} == {conversation, others[0]}
    assert (await get(chat, "/v1/messages", user="ann",
                      conversation_id=others[1])).status_code == 404
    refused = await chat.node.client.post("/v1/chat-messages", headers=chat.key, json={
        "inputs": {}, "query": "More?", "user": "ann", "conversation_id": others[1]})
    assert refused.status_code == 404


async def _all_three(listed: Any) -> dict[str, Any] | None:
    found = await listed()
    return found if len(found["data"]) == 3 else None


async def test_feedback_and_end_users_are_scoped_to_their_app(chat: Chat) -> None:
    answer = await ask(chat, "Rate me")
    message = answer["message_id"]
    await settled(chat, answer["conversation_id"], 1)
    liked = await chat.node.client.post(f"/v1/messages/{message}/feedbacks", headers=chat.key,
                                        json={"rating": "like", "user": "ann",
                                              "content": "Helpful"})
    assert liked.status_code == 200 and liked.json() == {"result": "success"}
    by_bob = await chat.node.client.post(f"/v1/messages/{message}/feedbacks", headers=chat.key,
                                         json={"rating": "dislike", "user": "bob"})
    assert by_bob.status_code == 404

    feedbacks = (await get(chat, "/v1/app/feedbacks")).json()
    validate("AppFeedbacksResponse", feedbacks)
    (item,) = feedbacks["data"]
    assert (item["message_id"], item["rating"], item["content"]) == (message, "like", "Helpful")
    history = await get(chat, "/v1/messages", user="ann",
                        conversation_id=answer["conversation_id"])
    assert history.json()["data"][0]["feedback"] == {"rating": "like"}

    end_user_id = item["from_end_user_id"]
    found = await get(chat, f"/v1/end-users/{end_user_id}")
    assert found.status_code == 200, found.text
    validate("EndUserDetail", found.json())
    assert found.json()["session_id"] == "ann" and found.json()["app_id"] == chat.app_id
    assert found.json()["type"] == "service-api"

    # another app's key sees none of it
    _, other_key = await app_with_key(chat.node, chat.auth, name="Other")
    assert (await get(chat, f"/v1/end-users/{end_user_id}", key=other_key)).status_code == 404
    assert (await get(chat, "/v1/conversations", key=other_key, user="ann")).json()["data"] == []
    assert (await get(chat, "/v1/app/feedbacks", key=other_key)).json()["data"] == []
    assert (await chat.node.client.post(f"/v1/messages/{message}/feedbacks", headers=other_key,
                                        json={"rating": "like", "user": "ann"})).status_code == 404

    withdrawn = await chat.node.client.post(f"/v1/messages/{message}/feedbacks",
                                            headers=chat.key, json={"rating": None, "user": "ann"})
    assert withdrawn.status_code == 200
    assert (await get(chat, "/v1/app/feedbacks")).json()["data"] == []


async def test_suggested_questions_after_an_answer(chat: Chat) -> None:
    answer = await ask(chat, "Tell me about Oslo")
    message = answer["message_id"]
    await settled(chat, answer["conversation_id"], 1)
    path = f"/v1/messages/{message}/suggested"
    disabled = await get(chat, path, user="ann")
    assert disabled.status_code == 400
    assert disabled.json() == {"code": "bad_request", "status": 400,
                               "message": "Suggested Questions Is Disabled."}

    await chat.configure(suggested_questions_after_answer={"enabled": True})
    chat.provider.script_chat('Sure: ["Best museums?", "Where to eat?", "Is it pricey?"]')
    found = await get(chat, path, user="ann")
    assert found.status_code == 200, found.text
    validate("SuggestedQuestionsResponse", found.json())
    assert found.json() == {"result": "success",
                            "data": ["Best museums?", "Where to eat?", "Is it pricey?"]}
    prompt = chat.provider.chat_requests[-1].body["messages"][0]["content"]
    assert "Human: Tell me about Oslo" in prompt and "three most likely questions" in prompt

    chat.provider.script_chat("no list here")
    assert (await get(chat, path, user="ann")).json() == {"result": "success", "data": []}
    assert (await get(chat, path, user="bob")).status_code == 404
