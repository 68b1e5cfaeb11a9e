"""Files for messages over HTTP: upload (Dify's limits and error codes), preview scoped to
the app, images in a chat message reaching the model as vision content, and an app's
deletion taking its conversations and files with it."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from projections.conversation import queries
from schemas.conversation import events as cev
from tests.chat import Chat, app_with_key, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import eventually, node_settings, running_node
from tests.local_http import QuietHandler, serving
from tests.spec import validate
from workers.node import all_roles

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9Q"
                       "DwADhgGAWjR9awAAAABJRU5ErkJggg==")


class _Images(QuietHandler):
    """A remote file host: /cat.png (a PNG), /nohead.png (HEAD not allowed: answers a
    ranged GET), /page.html (not an image), /big.png (over the 10 MB image limit)."""

    seen: list[tuple[str, str]] = []

    def do_HEAD(self) -> None:
        self.seen.append(("HEAD", self.path))
        if self.path == "/nohead.png":
            self._answer(405, "text/plain", b"")
        elif self.path == "/big.png":
            self._answer(200, "image/png", b"", length=10 * 1024 * 1024 + 1)
        else:
            self._answer(200, "text/html" if self.path == "/page.html" else "image/png", b"",
                         length=len(PNG))

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path))
        if self.headers.get("Range") == "bytes=0-0":
            self._answer(206, "image/png", PNG[:1], total=len(PNG))
        else:
            self._answer(200, "image/png", PNG)

    def _answer(self, status: int, mime: str, body: bytes, length: int | None = None,
                total: int | None = None) -> None:
        headers = {"Content-Type": mime,
                   "Content-Length": str(len(body) if length is None else length)}
        if total is not None:
            headers["Content-Range"] = f"bytes 0-{len(body) - 1}/{total}"
        self.reply(status, headers, body)


@pytest.fixture
def images() -> Iterator[str]:
    """The base URL of a local remote-file host on 127.0.0.1."""
    _Images.seen.clear()
    with serving(_Images) as port:
        yield f"http://127.0.0.1:{port}"


def remote(url: str) -> dict[str, str]:
    return {"type": "image", "transfer_method": "remote_url", "url": url}


async def upload(c: Chat, name: str, data: bytes, mime: str | None = "image/png",
                 user: str = "ann", key: dict[str, str] | None = None) -> dict[str, object]:
    answer = await c.node.client.post("/v1/files/upload", headers=key or c.key,
                                      files={"file": (name, data, mime)}, data={"user": user})
    return {"status": answer.status_code, **answer.json()}


async def test_upload_preview_and_limits(chat: Chat) -> None:
    uploaded = await upload(chat, "pixel.png", PNG)
    assert uploaded.pop("status") == 201, uploaded
    validate("FileUploadResponse", uploaded)
    assert (uploaded["name"], uploaded["size"], uploaded["extension"],
            uploaded["mime_type"]) == ("pixel.png", len(PNG), "png", "image/png")

    shown = await chat.node.client.get(f"/v1/files/{uploaded['id']}/preview", headers=chat.key)
    assert shown.status_code == 200 and shown.content == PNG
    assert shown.headers["content-type"] == "image/png"
    attached = await chat.node.client.get(f"/v1/files/{uploaded['id']}/preview",
                                          headers=chat.key, params={"as_attachment": "true"})
    assert attached.headers["content-disposition"] == \
        "attachment; filename=\"pixel.png\"; filename*=UTF-8''pixel.png"
    _, other_key = await app_with_key(chat.node, chat.auth, name="Other")
    elsewhere = await chat.node.client.get(f"/v1/files/{uploaded['id']}/preview",
                                           headers=other_key)
    assert elsewhere.status_code == 404 and elsewhere.json()["code"] == "file_not_found"

    # images are limited to UPLOAD_IMAGE_FILE_SIZE_LIMIT (10 MB), other files to 15 MB
    big = await upload(chat, "big.png", b"\0" * (10 * 1024 * 1024 + 1))
    assert (big["status"], big["code"]) == (413, "file_too_large")
    fine = await upload(chat, "notes.txt", b"x" * (11 * 1024 * 1024), mime="text/plain")
    assert fine["status"] == 201
    none = await chat.node.client.post("/v1/files/upload", headers=chat.key, data={"user": "a"})
    assert (none.status_code, none.json()["code"]) == (400, "no_file_uploaded")
    two = await chat.node.client.post("/v1/files/upload", headers=chat.key, data={"user": "a"},
                                      files=[("file", ("a.png", PNG, "image/png")),
                                             ("file", ("b.png", PNG, "image/png"))])
    assert (two.status_code, two.json()["code"]) == (400, "too_many_files")


IMAGES_ALLOWED = pytest.mark.settings(SSRF_ALLOWED_HOSTS="127.0.0.1")
BOTH_METHODS = {"image": {"enabled": True, "number_limits": 2, "detail": "low",
                          "transfer_methods": ["local_file", "remote_url"]}}


@IMAGES_ALLOWED
async def test_images_in_a_chat_message_reach_the_model(chat: Chat, images: str) -> None:
    uploaded = await upload(chat, "pixel.png", PNG)
    cat = f"{images}/cat.png"
    files = [{"type": "image", "transfer_method": "local_file",
              "upload_file_id": uploaded["id"]}, remote(cat)]
    refused = await chat.send("What is this?", files=files)
    assert refused.status_code == 400 and "not enabled" in refused.json()["message"]

    await chat.configure(file_upload=BOTH_METHODS)
    answer = await chat.send("What is this?", files=files)
    assert answer.status_code == 200, answer.text
    content = chat.provider.chat_requests[-1].body["messages"][-1]["content"]
    assert content == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(PNG).decode(), "detail": "low"}},
        {"type": "image_url", "image_url": {"url": cat, "detail": "low"}}]
    assert f"[image: {cat}]" in answer.json()["answer"]
    assert _Images.seen == [("HEAD", "/cat.png")]  # vetted by Eddy; the model fetches it

    bobs = await chat.node.client.post("/v1/chat-messages", headers=chat.key, json={
        "inputs": {}, "query": "Mine?", "user": "bob", "files": files[:1]})
    assert bobs.status_code == 404 and bobs.json()["code"] == "file_not_found"
    too_many = await chat.send("Three?", files=[*files, files[1]])
    assert too_many.status_code == 400


async def test_a_remote_image_on_an_internal_address_is_refused(chat: Chat,
                                                                 images: str) -> None:
    await chat.configure(file_upload=BOTH_METHODS)
    for url, reason in ((f"{images}/cat.png", "host 127.0.0.1 is not a public address"),
                        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
                        ("http://[::ffff:127.0.0.1]/cat.png", "not a public address"),
                        ("file:///etc/passwd", "must be http or https")):
        refused = await chat.send("What is this?", files=[remote(url)])
        assert refused.json() == {"code": "invalid_param", "status": 400,
                                  "message": refused.json()["message"]}, url
        assert reason in refused.json()["message"], url
    assert _Images.seen == [] and chat.provider.chat_requests == []  # never contacted

    # nothing was recorded: the user's only conversation is the one a plain message starts
    fine = await chat.send("Hello")
    assert fine.status_code == 200, fine.text
    listed = await chat.node.client.get("/v1/conversations", headers=chat.key,
                                        params={"user": "ann"})
    assert [c["id"] for c in listed.json()["data"]] == [fine.json()["conversation_id"]]
    messages = await chat.node.client.get("/v1/messages", headers=chat.key, params={
        "user": "ann", "conversation_id": fine.json()["conversation_id"]})
    assert [m["query"] for m in messages.json()["data"]] == ["Hello"]


@IMAGES_ALLOWED
async def test_a_remote_image_is_checked_for_type_and_size(chat: Chat, images: str) -> None:
    await chat.configure(file_upload=BOTH_METHODS)
    page = await chat.send("What is this?", files=[remote(f"{images}/page.html")])
    assert page.status_code == 400 and "not an image (text/html)" in page.json()["message"]
    big = await chat.send("What is this?", files=[remote(f"{images}/big.png")])
    assert big.status_code == 400 and "larger than 10 MB" in big.json()["message"]
    ranged = await chat.send("What is this?", files=[remote(f"{images}/nohead.png")])
    assert ranged.status_code == 200, ranged.text
    assert ("GET", "/nohead.png") in _Images.seen  # HEAD refused: a one-byte ranged GET
    content = chat.provider.chat_requests[-1].body["messages"][-1]["content"]
    assert content[-1]["image_url"]["url"] == f"{images}/nohead.png"


async def test_deleting_the_app_takes_its_conversations_and_files(chat: Chat) -> None:
    uploaded = await upload(chat, "pixel.png", PNG)
    answer = await chat.send("Hello")
    assert answer.status_code == 200
    c = chat.node.container
    app_id, file_id = UUID(chat.app_id), UUID(str(uploaded["id"]))
    stored = await eventually(lambda: queries.upload_file(c.engine, app_id, file_id))
    assert await c.storage.exists(stored["key"])
    await eventually(lambda: _has_conversation(c.engine, app_id))

    deleted = await chat.node.client.delete(f"/console/api/apps/{chat.app_id}",
                                            headers=chat.auth)
    assert deleted.status_code == 204

    async def gone() -> bool:
        return await queries.app_leftovers(c.engine, app_id) == ([], [])

    await eventually(gone)
    assert not await c.storage.exists(stored["key"])


async def _has_conversation(engine: Any, app_id: UUID) -> bool:
    return bool((await queries.app_leftovers(engine, app_id))[0])


async def test_deleting_the_app_while_projections_are_down_takes_what_it_made_meanwhile(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
        provider: FakeOpenAIServer) -> None:
    """The read model does not yet know the conversation and upload made just before the
    deletion (its projectors are down): the cleanup, reading the store, takes them all."""
    settings = node_settings(postgres, fresh_database("cleanup"), redis_url,
                             PROJECTION_WAIT_SECONDS=0.5)
    provider.reset()
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        await connect_provider(node, auth, provider)
        app_id, key = await app_with_key(node, auth)
        await Chat(node, auth, app_id, key, provider).configure()
        roles = [r for r in all_roles(node.container.work) if r != "projections"]

    async with running_node(settings, roles=roles, migrate_first=False) as node:
        chat = Chat(node, auth, app_id, key, provider)
        made = await upload(chat, "pixel.png", PNG)
        assert made["status"] == 202  # recorded; the read model cannot show it
        answer = await chat.send("Hello")
        assert answer.status_code == 200, answer.text
        conversation_id = UUID(answer.json()["conversation_id"])
        c = node.container
        [upload_event] = [e for e in c.store.read_from(0, 1000)
                          if isinstance(e.payload, cev.FileUploaded)]
        assert await c.storage.exists(upload_event.payload.key)

        deleted = await node.client.delete(f"/console/api/apps/{app_id}", headers=auth)
        assert deleted.status_code in (202, 204), deleted.text

        async def cleaned() -> bool:
            conversation = [e.type for e in c.store.load(conversation_id)]
            file = [e.type for e in c.store.load(upload_event.aggregate_id)]
            return conversation[-1] == "ConversationDeleted" and file[-1] == "FileDeleted"

        await eventually(cleaned, timeout=20)
        assert not await c.storage.exists(upload_event.payload.key)
