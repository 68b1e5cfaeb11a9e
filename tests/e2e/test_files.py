"""Files for messages over HTTP: upload (Dify's limits and error codes), preview scoped to
the app, images in a chat message reaching the model as vision content, and an app's
deletion taking its conversations and files with it."""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

from projections.conversation import queries
from tests.chat import Chat, app_with_key
from tests.harness import eventually
from tests.spec import validate

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9Q"
                       "DwADhgGAWjR9awAAAABJRU5ErkJggg==")


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
    assert attached.headers["content-disposition"] == 'attachment; filename="pixel.png"'
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


async def test_images_in_a_chat_message_reach_the_model(chat: Chat) -> None:
    uploaded = await upload(chat, "pixel.png", PNG)
    files = [{"type": "image", "transfer_method": "local_file",
              "upload_file_id": uploaded["id"]},
             {"type": "image", "transfer_method": "remote_url",
              "url": "https://example.com/cat.png"}]
    refused = await chat.send("What is this?", files=files)
    assert refused.status_code == 400 and "not enabled" in refused.json()["message"]

    await chat.configure(file_upload={"image": {"enabled": True, "number_limits": 2,
                                                "detail": "low",
                                                "transfer_methods": ["local_file",
                                                                     "remote_url"]}})
    answer = await chat.send("What is this?", files=files)
    assert answer.status_code == 200, answer.text
    content = chat.provider.chat_requests[-1].body["messages"][-1]["content"]
    assert content == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(PNG).decode(), "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png",
                                            "detail": "low"}}]
    assert "[image: https://example.com/cat.png]" in answer.json()["answer"]

    bobs = await chat.node.client.post("/v1/chat-messages", headers=chat.key, json={
        "inputs": {}, "query": "Mine?", "user": "bob", "files": files[:1]})
    assert bobs.status_code == 404 and bobs.json()["code"] == "file_not_found"
    too_many = await chat.send("Three?", files=[*files, files[1]])
    assert too_many.status_code == 400


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
