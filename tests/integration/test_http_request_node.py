"""The http-request node against a real HTTP server on 127.0.0.1: what the server receives
for each authorization and body type, templates in URL, params and headers, timeouts, Dify's
size limits, file answers kept in storage, the SSRF guard, and the Idempotency-Key header
being the same on every attempt of a node."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

import pytest

from schemas.workflow.naming import tool_file_key
from tests.local_http import QuietHandler, serving
from tests.workflow_nodes import TENANT, Services, execute, services
from workers.workflow.nodes.base import NodeError, NodeResult
from workflow_graph.variables import VariablePool

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


class _Server(QuietHandler):
    received: list[Received] = []

    def _record(self) -> Received:
        length = int(self.headers.get("Content-Length") or 0)
        parts = urlsplit(self.path)
        seen = Received(self.command, parts.path, dict(parse_qsl(parts.query)),
                        {k.lower(): v for k, v in self.headers.items()},
                        self.rfile.read(length) if length else b"")
        self.received.append(seen)
        return seen

    def _answer(self) -> None:
        seen = self._record()
        if seen.path == "/slow":
            with contextlib.suppress(ConnectionError):  # the client gave up: expected
                time.sleep(3)
                self.reply(200, {"Content-Length": "4"}, b"late")
        elif seen.path.startswith("/status/"):
            self.reply(int(seen.path.rsplit("/", 1)[1]),
                       {"Content-Type": "text/plain", "Content-Length": "7"}, b"no such")
        elif seen.path == "/text":
            body = b"x" * int(seen.query["size"])
            self.reply(200, {"Content-Type": "text/plain", "Content-Length": str(len(body))},
                       body)
        elif seen.path in ("/see-other", "/elsewhere"):
            target = "/in" if seen.path == "/see-other" else \
                f"http://localhost:{self.server.server_address[1]}/in"
            self.reply(303 if seen.path == "/see-other" else 307,
                       {"Location": target, "Content-Length": "0"})
        elif seen.path == "/image":
            self.reply(200, {"Content-Type": "image/png", "Content-Length": str(len(PNG)),
                             "Content-Disposition": 'attachment; filename="chart.png"'}, PNG)
        else:
            body = json.dumps({"ok": True}).encode()
            self.reply(200, {"Content-Type": "application/json", "X-Served-By": "local",
                             "Content-Length": str(len(body))}, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serving(_Server) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def received() -> list[Received]:
    _Server.received.clear()
    return _Server.received


@pytest.fixture
def svc(tmp_path: Path) -> Services:
    return services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1")


POOL = VariablePool.for_run(system={"query": "weather in Oslo"},
                            environment={"API_KEY": "sk-secret"}).with_outputs(
    "start", {"id": "42", "name": "Ann", "doc": {
        "dify_model_identity": "__dify__file__", "transfer_method": "tool_file",
        "related_id": "5b6c8a57-5c4e-4c52-9a4b-0c4c1f5f7d11", "filename": "chart.png",
        "extension": ".png", "mime_type": "image/png", "type": "image", "size": len(PNG)}})


def _node(url: str, **data: Any) -> dict[str, Any]:
    return {"method": "get", "url": url, "authorization": {"type": "no-auth"}, "headers": "",
            "params": "", "body": {"type": "none", "data": []}, **data}


async def _send(svc: Services, data: dict[str, Any], **kwargs: Any) -> NodeResult:
    return await execute("http-request", data, POOL, svc, **kwargs)


async def test_url_params_and_headers_are_rendered_from_the_pool(
        origin: str, received: list[Received], svc: Services) -> None:
    result = await _send(svc, _node(f"{origin}/items/{{{{#start.id#}}}}?fixed=1",
                                    params="q: {{#sys.query#}}\nuser:{{#start.name#}}",
                                    headers="X-Trace: t-{{#start.id#}}\nAccept:"))
    [seen] = received
    assert (seen.method, seen.path) == ("GET", "/items/42")
    assert seen.query == {"fixed": "1", "q": "weather in Oslo", "user": "Ann"}
    assert seen.headers["x-trace"] == "t-42" and seen.headers["accept"] == ""
    assert result.outputs["status_code"] == 200
    assert json.loads(result.outputs["body"]) == {"ok": True}
    assert result.outputs["headers"]["x-served-by"] == "local"
    assert result.outputs["files"] == []


@pytest.mark.parametrize(("config", "header", "expected"), [
    ({"type": "bearer", "api_key": "{{#env.API_KEY#}}"}, "authorization", "Bearer sk-secret"),
    ({"type": "basic", "api_key": "ann:pw"}, "authorization",
     "Basic " + base64.b64encode(b"ann:pw").decode()),
    ({"type": "basic", "api_key": "YW5uOnB3"}, "authorization", "Basic YW5uOnB3"),
    ({"type": "custom", "api_key": "k-1", "header": "X-Api-Key"}, "x-api-key", "k-1"),
])
async def test_each_api_key_authorization_reaches_the_server(
        origin: str, received: list[Received], svc: Services, config: dict[str, Any],
        header: str, expected: str) -> None:
    result = await _send(svc, _node(f"{origin}/auth", authorization={"type": "api-key",
                                                                     "config": config}))
    assert received[0].headers[header] == expected
    assert expected not in result.process_data["request"]  # the log masks the credential


async def test_no_auth_sends_no_authorization(origin: str, received: list[Received],
                                              svc: Services) -> None:
    await _send(svc, _node(f"{origin}/open"))
    assert "authorization" not in received[0].headers


def _body(kind: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "data": list(items)}


async def test_each_body_type_as_the_server_receives_it(
        origin: str, received: list[Received], svc: Services) -> None:
    await svc.storage.save(tool_file_key(TENANT, UUID(POOL.get("start.doc.related_id")),
                                         ".png"), PNG)
    bodies = [
        _body("none"),
        _body("raw-text", {"type": "text", "value": "hi {{#start.name#}}"}),
        _body("json", {"type": "text",
                       "value": '{"q": "{{#sys.query#}}", "n": 1, "s": "Grüße"}'}),
        _body("x-www-form-urlencoded", {"type": "text", "key": "a", "value": "1 2"},
              {"type": "text", "key": "who", "value": "{{#start.name#}}"}),
        _body("form-data", {"type": "text", "key": "note", "value": "for {{#start.name#}}"},
              {"type": "file", "key": "upload", "file": ["start", "doc"]}),
        _body("binary", {"type": "file", "file": ["start", "doc"]}),
    ]
    for body in bodies:
        await _send(svc, _node(f"{origin}/in", method="post", body=body))
    none, raw, as_json, form, multipart, binary = received
    assert none.body == b""
    assert (raw.body, raw.headers.get("content-type")) == (b"hi Ann", None)
    assert as_json.headers["content-type"] == "application/json"
    assert json.loads(as_json.body) == {"q": "weather in Oslo", "n": 1, "s": "Grüße"}
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(form.body.decode())) == {"a": "1 2", "who": "Ann"}
    assert multipart.headers["content-type"].startswith("multipart/form-data; boundary=")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + multipart.headers["content-type"].encode() + b"\r\n\r\n"
        + multipart.body)
    parts = {part.get_param("name", header="content-disposition"): part
             for part in message.iter_parts()}
    assert parts["note"].get_content() == "for Ann"
    assert parts["upload"].get_filename() == "chart.png"
    assert parts["upload"].get_content_type() == "image/png"
    assert parts["upload"].get_payload(decode=True) == PNG
    assert binary.body == PNG


async def test_a_json_body_that_is_not_json_fails_before_sending(
        origin: str, received: list[Received], svc: Services) -> None:
    with pytest.raises(NodeError, match=r"Failed to parse JSON: \{oops") as failed:
        await _send(svc, _node(f"{origin}/in", method="post",
                               body=_body("json", {"type": "text", "value": "{oops"})))
    assert failed.value.error_type == "RequestBodyError" and received == []


async def test_the_node_timeout_and_its_cap_end_a_slow_answer(
        origin: str, received: list[Received], tmp_path: Path) -> None:
    svc = services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1")
    with pytest.raises(NodeError, match="ReadTimeout"):
        await _send(svc, _node(f"{origin}/slow", timeout={"connect": 5, "read": 1,
                                                           "write": 5}))
    capped = services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1",
                      HTTP_REQUEST_MAX_READ_TIMEOUT=1)
    with pytest.raises(NodeError, match="ReadTimeout"):
        await _send(capped, _node(f"{origin}/slow", timeout={"read": 600}))
    assert len(received) == 2


async def test_an_answer_over_its_size_limit_fails_with_difys_message(
        origin: str, tmp_path: Path) -> None:
    svc = services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1",
                   HTTP_REQUEST_NODE_MAX_TEXT_SIZE=2048,
                   HTTP_REQUEST_NODE_MAX_BINARY_SIZE=len(PNG))
    ok = await _send(svc, _node(f"{origin}/text?size=2048"))
    assert ok.outputs["body"] == "x" * 2048
    with pytest.raises(NodeError) as failed:
        await _send(svc, _node(f"{origin}/text?size=3000"))
    assert failed.value.message == ("Text size is too large, max size is 0.00 MB, but current "
                                    "size is 2.93 KB.")
    assert failed.value.error_type == "ResponseSizeError"
    # over both limits: not read on, the size told by its Content-Length
    tight = services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1",
                     HTTP_REQUEST_NODE_MAX_TEXT_SIZE=2048, HTTP_REQUEST_NODE_MAX_BINARY_SIZE=2048)
    with pytest.raises(NodeError, match=r"^Text size is too large, max size is 0\.00 MB, but "
                                        r"current size is 97\.66 KB\.$"):
        await _send(tight, _node(f"{origin}/text?size=100000"))
    # a file answer is held to the binary limit: larger than the text limit, yet fine
    assert len((await _send(svc, _node(f"{origin}/image"))).outputs["files"]) == 1
    smaller = services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1",
                       HTTP_REQUEST_NODE_MAX_BINARY_SIZE=4096)
    with pytest.raises(NodeError, match=r"^File size is too large, max size is 0\.00 MB, but "
                                        r"current size is 5\.01 KB\.$"):
        await _send(smaller, _node(f"{origin}/image"))


async def test_a_file_answer_is_stored_and_output_as_a_file(origin: str,
                                                           svc: Services) -> None:
    first = await _send(svc, _node(f"{origin}/image"))
    [file] = first.outputs["files"]
    assert first.outputs["body"] == ""
    assert (file["filename"], file["extension"], file["mime_type"], file["type"],
            file["transfer_method"], file["size"]) == (
        "chart.png", ".png", "image/png", "image", "tool_file", len(PNG))
    assert await svc.storage.load(tool_file_key(TENANT, UUID(file["related_id"]), ".png")) \
        == PNG
    retried = await _send(svc, _node(f"{origin}/image"), attempt=1)
    assert retried.outputs["files"] == [file]  # a retry overwrites the same file


async def test_an_error_status_is_output_unless_the_node_can_act_on_it(
        origin: str, svc: Services) -> None:
    answered = await _send(svc, _node(f"{origin}/status/404"))
    assert (answered.outputs["status_code"], answered.outputs["body"]) == (404, "no such")
    for handling in ({"retry_config": {"retry_enabled": True, "max_retries": 2}},
                     {"error_strategy": "fail-branch"}):
        with pytest.raises(NodeError, match="Request failed with status code 500") as failed:
            await _send(svc, _node(f"{origin}/status/500", **handling))
        assert failed.value.error_type == "HTTPResponseCodeError"


async def test_a_private_address_is_refused_unless_allowed(
        origin: str, received: list[Received], tmp_path: Path) -> None:
    with pytest.raises(NodeError, match=r"host 127\.0\.0\.1 is not a public address"):
        await _send(services(tmp_path), _node(f"{origin}/internal"))
    with pytest.raises(NodeError, match=r"host 10\.0\.0\.1 is not a public address"):
        await _send(services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1"),
                    _node("http://10.0.0.1/admin"))
    assert received == []  # nothing was sent


async def test_every_attempt_carries_the_same_idempotency_key(
        origin: str, received: list[Received], svc: Services) -> None:
    data = _node(f"{origin}/charge", method="post",
                 body=_body("json", {"type": "text", "value": '{"amount": 5}'}))
    await _send(svc, data, idempotency_key="run-7-charge", attempt=0)
    await _send(svc, data, idempotency_key="run-7-charge", attempt=1)  # the engine's retry
    assert [r.headers["idempotency-key"] for r in received] == ["run-7-charge"] * 2
    await _send(svc, {**data, "headers": "Idempotency-Key: mine"},
                idempotency_key="run-7-charge")
    assert received[-1].headers["idempotency-key"] == "mine"


async def test_redirects_are_followed_as_httpx_follows_them(
        origin: str, received: list[Received], tmp_path: Path) -> None:
    svc = services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1,localhost")
    post = _node(f"{origin}/see-other", method="post",
                 authorization={"type": "api-key", "config": {"type": "bearer", "api_key": "k"}},
                 body=_body("raw-text", {"type": "text", "value": "payload"}))
    await _send(svc, post)
    await _send(svc, {**post, "url": f"{origin}/elsewhere"})
    _, see_other, _, elsewhere = received
    # 303: a GET without the body, same origin so the credential stays
    assert (see_other.method, see_other.body) == ("GET", b"")
    assert see_other.headers["authorization"] == "Bearer k"
    # 307 to another origin: method and body kept, the credential not sent there
    assert (elsewhere.method, elsewhere.body) == ("POST", b"payload")
    assert elsewhere.headers["host"].startswith("localhost:")
    assert "authorization" not in elsewhere.headers


async def test_a_rendered_url_is_percent_encoded(origin: str, received: list[Received],
                                                 svc: Services) -> None:
    await _send(svc, _node(f"{origin}/search?q={{{{#sys.query#}}}}&city=Tromsø"))
    assert received[0].query == {"q": "weather in Oslo", "city": "Tromsø"}


async def test_a_bad_method_url_or_header_fails_clearly(svc: Services) -> None:
    with pytest.raises(NodeError, match="Invalid http method trace"):
        await _send(svc, _node("http://127.0.0.1/", method="trace"))
    with pytest.raises(NodeError, match="url should start with http:// or https://"):
        await _send(svc, _node("ftp://127.0.0.1/"))
    with pytest.raises(NodeError, match="Header X-Name holds characters HTTP headers cannot"):
        await _send(svc, _node("http://127.0.0.1/", headers="X-Name: Grüße"))
