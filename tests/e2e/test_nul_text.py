"""A NUL character (U+0000) in any text a client sends is refused at the edge, over real
HTTP: JSON bodies (chat `query` and `user`, annotation question, dataset name), query and
path parameters, multipart form fields and file names. Each answers 400 `invalid_param`
in Dify's shape and records nothing; the conversation that follows works as usual (before,
one such message poisoned its conversation's read model for good)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import text

from tests.chat import Chat
from tests.harness import served

BOUNDARY = "eddy-nul-boundary"


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"code", "message", "status"}
    assert (body["code"], body["status"]) == ("invalid_param", 400)
    assert "NUL" in body["message"]


def _multipart(filename: bytes, data: bytes) -> bytes:
    """A create-by-file body written by hand, so the NUL reaches the server as sent."""
    return (f"--{BOUNDARY}\r\n".encode()
            + b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
            + b"Content-Type: text/plain\r\n\r\nSome text about rivers.\r\n"
            + f"--{BOUNDARY}\r\n".encode()
            + b'Content-Disposition: form-data; name="data"\r\n\r\n' + data + b"\r\n"
            + f"--{BOUNDARY}--\r\n".encode())


async def _events(chat: Chat) -> int:
    async with chat.node.container.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM stored_events"))).scalar()
                   or 0)


async def test_nul_in_any_text_is_refused_at_the_edge_and_records_nothing(chat: Chat) -> None:
    await chat.configure()
    token = (await chat.node.client.post("/console/api/datasets/api-keys",
                                         headers=chat.auth)).json()["token"]
    dataset_key = {"Authorization": f"Bearer {token}"}
    async with served(chat.node.app) as url, httpx.AsyncClient(base_url=url) as http:
        dataset = await http.post("/v1/datasets", headers=dataset_key, json={
            "name": "Rivers", "indexing_technique": "economy"})
        assert dataset.status_code == 200, dataset.text
        dataset_id = dataset.json()["id"]
        before = await _events(chat)

        message: dict[str, Any] = {"inputs": {}, "query": "Hi", "user": "ann",
                                   "response_mode": "blocking"}
        _refused(await http.post("/v1/chat-messages", headers=chat.key,
                                 json={**message, "query": "Hi\u0000there"}))
        _refused(await http.post("/v1/chat-messages", headers=chat.key,
                                 json={**message, "user": "a\u0000nn"}))
        _refused(await http.post("/v1/chat-messages", headers=chat.key,
                                 json={**message, "inputs": {"city\u0000": "Paris"}}))
        _refused(await http.post("/v1/apps/annotations", headers=chat.key,
                                 json={"question": "Why\u0000?", "answer": "Because."}))
        _refused(await http.post("/v1/datasets", headers=dataset_key,
                                 json={"name": "Nul\u0000set"}))
        _refused(await http.get("/v1/datasets?keyword=riv%00ers", headers=dataset_key))
        _refused(await http.get("/v1/conversations?user=a%00nn", headers=chat.key))
        _refused(await http.get(f"/v1/datasets/{dataset_id}%00", headers=dataset_key))
        by_file = f"/v1/datasets/{dataset_id}/document/create-by-file"
        headers = {**dataset_key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        rule = json.dumps({"indexing_technique": "economy",
                           "process_rule": {"mode": "automatic"}}).encode()
        _refused(await http.post(by_file, headers=headers,
                                 content=_multipart(b"riv\x00ers.txt", rule)))
        _refused(await http.post(by_file, headers=headers, content=_multipart(
            b"rivers.txt", rule.replace(b"automatic", b"auto\x00matic"))))
        assert await _events(chat) == before  # nothing was recorded

        # Not a NUL: a backslash followed by "u0000" is ordinary text.
        literal = await http.post("/v1/datasets", headers=dataset_key,
                                  json={"name": "back\\u0000slash"})
        assert literal.status_code == 200 and literal.json()["name"] == "back\\u0000slash"
        uploaded = await http.post(by_file, headers=headers,
                                   content=_multipart(b"rivers.txt", rule))
        assert uploaded.status_code == 200, uploaded.text

        answered = await http.post("/v1/chat-messages", headers=chat.key, json=message)
        assert answered.status_code == 200, answered.text
        conversation = answered.json()["conversation_id"]
        history = await http.get(f"/v1/messages?conversation_id={conversation}&user=ann",
                                 headers=chat.key)
        assert history.status_code == 200, history.text
        assert [m["query"] for m in history.json()["data"]] == ["Hi"]
