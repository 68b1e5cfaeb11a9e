"""The IO nodes in a published workflow run by the engine on the in-memory node: a file the
user uploaded is given as a run input, its text extracted, and posted on (with the text) to
a local HTTP server, whose answer ends the run; an upload that is not the user's is refused
before anything is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from gateway import auth as gateway_auth
from tests.chat import app_with_key
from tests.harness import Node
from tests.local_http import QuietHandler, serving
from tests.memory import memory_app
from tests.workflows import edge, end_outputs, graph, graph_node, publish


class _Receiver(QuietHandler):
    posted: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.posted.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.reply(201, {"Content-Type": "application/json", "Content-Length": "15"},
                   b'{"stored":true}')


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.posted.clear()
    with serving(_Receiver) as port:
        yield f"http://127.0.0.1:{port}/docs"


@pytest.fixture
async def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    monkeypatch.setattr(gateway_auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                                parallelism=1))
    async with memory_app(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1") as n:
        yield n


def _workflow(url: str) -> dict[str, Any]:
    return graph(
        [graph_node("start", "start", variables=[
            {"variable": "doc", "label": "doc", "type": "file", "required": True}]),
         graph_node("extract", "document-extractor", variable_selector=["start", "doc"]),
         graph_node("post", "http-request", method="post", url=url,
                    authorization={"type": "no-auth"}, headers="", params="",
                    body={"type": "form-data", "data": [
                        {"type": "text", "key": "text", "value": "{{#extract.text#}}"},
                        {"type": "file", "key": "doc", "file": ["start", "doc"]}]}),
         graph_node("end", "end", outputs=end_outputs(("text", ["extract", "text"]),
                                                      ("status", ["post", "status_code"]),
                                                      ("answer", ["post", "body"])))],
        [edge("start", "extract"), edge("extract", "post"), edge("post", "end")])


async def _upload(node: Node, key: dict[str, str], user: str) -> str:
    answer = await node.client.post("/v1/files/upload", headers=key, data={"user": user},
                                    files={"file": ("notes.md", b"# Minutes\nShip it.",
                                                    "text/markdown")})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def test_an_uploaded_file_is_extracted_and_posted_on(node: Node, receiver: str) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Filer")
    publish(node, app_id, _workflow(receiver))
    file_id = await _upload(node, key, "ann")
    ran = await node.client.post("/v1/workflows/run", headers=key, json={
        "inputs": {"doc": {"type": "document", "transfer_method": "local_file",
                           "upload_file_id": file_id}},
        "user": "ann", "response_mode": "blocking"})
    assert ran.status_code == 200, ran.text
    data = ran.json()["data"]
    assert data["status"] == "succeeded", data["error"]
    assert data["outputs"] == {"text": "# Minutes\nShip it.", "status": 201,
                               "answer": '{"stored":true}'}
    [(headers, body)] = _Receiver.posted
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + body)
    parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
    assert parts["text"].get_content() == "# Minutes\nShip it."
    assert parts["doc"].get_filename() == "notes.md"
    assert parts["doc"].get_payload(decode=True) == b"# Minutes\nShip it."
    assert headers["idempotency-key"]


async def test_another_users_upload_is_refused_before_the_run(node: Node,
                                                              receiver: str) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth, mode="workflow", name="Filer")
    publish(node, app_id, _workflow(receiver))
    file_id = await _upload(node, key, "bob")
    ran = await node.client.post("/v1/workflows/run", headers=key, json={
        "inputs": {"doc": {"type": "document", "transfer_method": "local_file",
                           "upload_file_id": file_id}},
        "user": "ann", "response_mode": "blocking"})
    assert (ran.status_code, ran.json()["code"]) == (404, "file_not_found")
    assert _Receiver.posted == []
