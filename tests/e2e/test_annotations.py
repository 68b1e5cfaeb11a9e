"""Annotations and annotation reply end to end over HTTP (Service API): create, list with a
keyword, update, delete; reply enabled and disabled as jobs; a question close enough to an
annotated one answered with the annotation without calling the model (blocking and
streaming, per the spec), counted as a hit; the index following edits while enabled."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from projections.conversation import queries
from tests.chat import KEY, PROVIDERS, Chat
from tests.e2e.test_messages import check_chat_events, sse_events
from tests.harness import eventually
from tests.spec import validate

ANNOTATIONS = "/v1/apps/annotations"
REPLY = "/v1/apps/annotation-reply"
HOURS = ("What are the museum opening hours?", "From nine to five, every day but Monday.")
PARKING = ("Is there parking for bicycles?", "Yes, behind the east entrance.")


def reply_settings(threshold: float = 0.85, model: str = "bge-m3") -> dict[str, Any]:
    return {"score_threshold": threshold, "embedding_provider_name": "openai_api_compatible",
            "embedding_model_name": model}


async def connect_embeddings(c: Chat) -> None:
    saved = await c.node.client.post(
        f"{PROVIDERS}/openai_api_compatible/models", headers=c.auth, json={
            "model": "bge-m3", "model_type": "text-embedding", "credentials": {
                "api_key": KEY, "endpoint_url": c.provider.base_url}})
    assert saved.status_code == 200, saved.text


async def create(c: Chat, question: str, answer: str) -> dict[str, Any]:
    r = await c.node.client.post(ANNOTATIONS, headers=c.key,
                                 json={"question": question, "answer": answer})
    assert r.status_code == 201, r.text
    validate("AnnotationItem", r.json())
    return r.json()  # type: ignore[no-any-return]


async def listed(c: Chat, **params: Any) -> dict[str, Any]:
    r = await c.node.client.get(ANNOTATIONS, headers=c.key, params=params)
    assert r.status_code == 200, r.text
    validate("AnnotationListResponse", r.json())
    return r.json()  # type: ignore[no-any-return]


async def run_job(c: Chat, action: str, **settings: Any) -> dict[str, Any]:
    """Start an enable/disable job and poll it until it ends."""
    r = await c.node.client.post(f"{REPLY}/{action}", headers=c.key,
                                 json=reply_settings(**settings))
    assert r.status_code == 200, r.text
    validate("InitialAnnotationReplySettingsResponse", r.json())
    assert r.json()["job_status"] == "waiting"
    job_id = r.json()["job_id"]

    async def ended() -> dict[str, Any] | None:
        status = await c.node.client.get(f"{REPLY}/{action}/status/{job_id}", headers=c.key)
        assert status.status_code == 200, status.text
        validate("InitialAnnotationReplySettingsStatusResponse", status.json())
        body: dict[str, Any] = status.json()
        assert body["job_status"] in ("waiting", "processing", "completed", "error")
        return body if body["job_status"] in ("completed", "error") else None

    return await eventually(ended)  # type: ignore[no-any-return]


async def in_force(c: Chat) -> str:
    """The collection annotation reply searches now."""
    setting = await queries.annotation_reply_setting(c.node.container.engine, UUID(c.app_id))
    assert setting is not None
    return str(setting["collection"])


async def answer(c: Chat, query: str) -> str:
    r = await c.send(query)
    assert r.status_code == 200, r.text
    validate("ChatCompletionResponse", r.json())
    return r.json()["answer"]  # type: ignore[no-any-return]


async def test_annotation_reply_answers_without_the_model(chat: Chat) -> None:
    await connect_embeddings(chat)
    hours = await create(chat, *HOURS)
    assert (hours["question"], hours["answer"], hours["hit_count"]) == (*HOURS, 0)
    parking = await create(chat, *PARKING)
    llm_calls = chat.provider.calls("/chat/completions")
    # nothing enabled yet: the model answers
    assert await answer(chat, HOURS[0]) == f"Echo: {HOURS[0]}"
    assert chat.provider.calls("/chat/completions") == llm_calls + 1

    job = await run_job(chat, "enable")
    assert (job["job_status"], job["error_msg"]) == ("completed", "")
    llm_calls = chat.provider.calls("/chat/completions")

    # a near-identical question: the annotation's answer, no model call (blocking)
    blocking = await chat.send("what are the museum opening hours")
    assert blocking.status_code == 200, blocking.text
    validate("ChatCompletionResponse", blocking.json())
    assert blocking.json()["answer"] == HOURS[1]
    # ... and streaming, shaped as any answer
    streamed = await chat.send("What are the museum opening hours today?", mode="streaming")
    events = [e for _, e in sse_events(streamed.content) if e is not None]
    check_chat_events(events)
    assert [e["event"] for e in events] == ["message", "message_end"]
    assert events[0]["answer"] == HOURS[1]
    assert events[1]["metadata"]["annotation_reply"]["id"] == hours["id"]
    assert chat.provider.calls("/chat/completions") == llm_calls

    # both hits counted on the annotation, none on the other
    async def counted() -> dict[str, int] | None:
        counts = {a["id"]: a["hit_count"] for a in (await listed(chat))["data"]}
        return counts if counts[hours["id"]] == 2 else None

    assert await eventually(counted) == {hours["id"]: 2, parking["id"]: 0}

    # a different question goes to the model
    assert await answer(chat, "Who painted the ceiling?") == "Echo: Who painted the ceiling?"
    assert chat.provider.calls("/chat/completions") == llm_calls + 1

    # while enabled, new and edited annotations answer, deleted ones no longer do
    ceiling = await create(chat, "Who painted the ceiling?", "Tiepolo, in 1753.")

    async def answered_with(query: str, expected: str) -> bool:
        return await answer(chat, query) == expected

    await eventually(lambda: answered_with("Who painted the ceiling?", "Tiepolo, in 1753."))
    r = await chat.node.client.put(f"{ANNOTATIONS}/{ceiling['id']}", headers=chat.key,
                                   json={"question": "Who painted the ceiling fresco?",
                                         "answer": "Giambattista Tiepolo."})
    assert r.status_code == 200, r.text
    validate("AnnotationItem", r.json())
    assert (r.json()["question"], r.json()["answer"]) == ("Who painted the ceiling fresco?",
                                                          "Giambattista Tiepolo.")
    await eventually(lambda: answered_with("Who painted the ceiling fresco?",
                                           "Giambattista Tiepolo."))
    r = await chat.node.client.delete(f"{ANNOTATIONS}/{ceiling['id']}", headers=chat.key)
    assert r.status_code == 204, r.text
    await eventually(lambda: answered_with("Who painted the ceiling fresco?",
                                           "Echo: Who painted the ceiling fresco?"))

    # disabled: the model answers again
    assert (await run_job(chat, "disable"))["job_status"] == "completed"
    llm_calls = chat.provider.calls("/chat/completions")
    assert await answer(chat, HOURS[0]) == f"Echo: {HOURS[0]}"
    assert chat.provider.calls("/chat/completions") == llm_calls + 1


async def test_annotations_list_update_delete_and_bad_input(chat: Chat) -> None:
    c = chat.node.client
    for n in range(3):
        await create(chat, f"Question {n} about tickets", f"Answer {n}")
    await create(chat, *PARKING)
    page = await listed(chat, limit=2, page=1)
    assert [a["question"] for a in page["data"]] == [PARKING[0], "Question 2 about tickets"]
    assert (page["total"], page["has_more"], page["limit"], page["page"]) == (4, True, 2, 1)
    last = await listed(chat, limit=2, page=2)
    assert [a["answer"] for a in last["data"]] == ["Answer 1", "Answer 0"]
    assert last["has_more"] is False
    assert (await listed(chat, limit=500))["limit"] == 100  # capped as Dify caps it
    found = await listed(chat, keyword="TICKETS")
    assert found["total"] == 3 and {a["answer"] for a in found["data"]} == {
        "Answer 0", "Answer 1", "Answer 2"}
    assert [a["question"] for a in (await listed(chat, keyword="east entrance"))["data"]] == [
        PARKING[0]]  # the keyword matches answers too

    target = found["data"][0]["id"]
    missing = "00000000-0000-4000-8000-000000000000"
    bad: list[tuple[str, str, dict[str, Any] | None, int, str]] = [
        ("POST", ANNOTATIONS, {"question": "only a question"}, 400, "invalid_param"),
        ("POST", ANNOTATIONS, {"question": "", "answer": "x"}, 400, "invalid_param"),
        ("PUT", f"{ANNOTATIONS}/{target}", {"answer": "no question"}, 400, "invalid_param"),
        ("PUT", f"{ANNOTATIONS}/{missing}", {"question": "q", "answer": "a"}, 404, "not_found"),
        ("PUT", f"{ANNOTATIONS}/not-an-id", {"question": "q", "answer": "a"}, 404,
         "not_found"),
        ("DELETE", f"{ANNOTATIONS}/{missing}", None, 404, "not_found"),
        ("POST", f"{REPLY}/toggle", reply_settings(), 400, "invalid_param"),
        ("POST", f"{REPLY}/enable", {"score_threshold": 0.9}, 400, "invalid_param"),
        ("POST", f"{REPLY}/disable", {"embedding_provider_name": "p",
                                      "embedding_model_name": "m"}, 400, "invalid_param"),
        ("POST", f"{REPLY}/enable", reply_settings(threshold=1.5), 400, "invalid_param"),
        ("GET", f"{REPLY}/enable/status/{missing}", None, 400, "invalid_param"),
        ("GET", f"{ANNOTATIONS}?page=0", None, 400, "invalid_param"),
    ]
    for method, path, body, status, code in bad:
        r = await c.request(method, path, headers=chat.key, json=body)
        assert r.status_code == status, (method, path, r.text)
        assert r.json()["code"] == code and r.json()["status"] == status, r.text
    assert (await listed(chat))["total"] == 4  # nothing changed
    # another app's key sees none of them, and cannot touch them
    other_app = await c.post("/console/api/apps", headers=chat.auth,
                             json={"name": "Other", "mode": "chat", "icon": "x"})
    other_key = await c.post(f"/console/api/apps/{other_app.json()['id']}/api-keys",
                             headers=chat.auth)
    other = {"Authorization": f"Bearer {other_key.json()['token']}"}
    assert (await c.get(ANNOTATIONS, headers=other)).json()["total"] == 0
    r = await c.delete(f"{ANNOTATIONS}/{target}", headers=other)
    assert r.status_code == 404, r.text

    r = await c.put(f"{ANNOTATIONS}/{target}", headers=chat.key,
                    json={"question": "Student tickets?", "answer": "Half price."})
    assert r.status_code == 200 and r.json()["answer"] == "Half price.", r.text
    assert (await listed(chat, keyword="student"))["data"][0]["id"] == target
    assert (await c.delete(f"{ANNOTATIONS}/{target}", headers=chat.key)).status_code == 204
    assert (await listed(chat))["total"] == 3
    assert (await c.delete(f"{ANNOTATIONS}/{target}", headers=chat.key)).status_code == 404

    # an embedding model the workspace does not have: the job ends in error, reply stays off
    job = await run_job(chat, "enable", model="no-such-embedding")
    assert job["job_status"] == "error" and job["error_msg"], job
    llm_calls = chat.provider.calls("/chat/completions")
    assert await answer(chat, PARKING[0]) == f"Echo: {PARKING[0]}"
    assert chat.provider.calls("/chat/completions") == llm_calls + 1


async def test_deleting_the_app_takes_its_annotations_and_their_index(chat: Chat) -> None:
    await connect_embeddings(chat)
    for question, reply in (HOURS, PARKING):
        await create(chat, question, reply)
    assert (await run_job(chat, "enable"))["job_status"] == "completed"
    c = chat.node.container
    app_id = UUID(chat.app_id)
    collection = await in_force(chat)
    assert await c.vectors.count(collection) == 2

    deleted = await chat.node.client.delete(f"/console/api/apps/{chat.app_id}",
                                            headers=chat.auth)
    assert deleted.status_code == 204

    async def gone() -> bool:
        return (await queries.list_annotations(c.engine, app_id, "", 1, 20))[1] == 0 \
            and await c.vectors.count(collection) == 0

    await eventually(gone)


async def test_a_failed_enable_job_leaves_reply_working_as_it_was(chat: Chat) -> None:
    """Enabling again builds a new index beside the one in force and switches only once it
    is complete: the embedding endpoint failing mid-job changes nothing users notice, and
    later annotation writes still reach the index."""
    await connect_embeddings(chat)
    for question, reply in (HOURS, PARKING):
        await create(chat, question, reply)
    assert (await run_job(chat, "enable"))["job_status"] == "completed"
    working = await in_force(chat)
    vectors = chat.node.container.vectors

    chat.provider.fail_next(5, status=400, path="/embeddings")  # no retry: the job fails
    failed = await run_job(chat, "enable", threshold=0.5)
    assert failed["job_status"] == "error" and failed["error_msg"]
    chat.provider.reset()
    assert await in_force(chat) == working and await vectors.count(working) == 2
    setting = await queries.annotation_reply_setting(chat.node.container.engine,
                                                     UUID(chat.app_id))
    assert setting is not None and setting["score_threshold"] == 0.85  # the one in force
    llm_calls = chat.provider.calls("/chat/completions")
    assert await answer(chat, "what are the museum opening hours") == HOURS[1]
    assert chat.provider.calls("/chat/completions") == llm_calls

    # a later annotation write reaches the index in force (not a dead letter)
    ceiling = await create(chat, "Who painted the ceiling?", "Tiepolo, in 1753.")

    await eventually(lambda: _count_is(vectors, working, 3))
    assert await answer(chat, "Who painted the ceiling?") == "Tiepolo, in 1753."

    # enabling again, successfully: the new index replaces the old, which goes
    assert (await run_job(chat, "enable", threshold=0.8))["job_status"] == "completed"
    rebuilt = await in_force(chat)
    assert rebuilt != working
    assert (await vectors.count(rebuilt), await vectors.count(working)) == (3, 0)
    r = await chat.node.client.delete(f"{ANNOTATIONS}/{ceiling['id']}", headers=chat.key)
    assert r.status_code == 204, r.text
    await eventually(lambda: _count_is(vectors, rebuilt, 2))


async def _count_is(vectors: Any, collection: str, expected: int) -> bool:
    return await vectors.count(collection) == expected
