"""Dify's file clean-ups (`eddy remove-orphaned-files-on-storage`, `eddy
clear-orphaned-file-records`) against real Postgres, Redis and the local storage: what no
record names goes, what users have stays, checked through the Service API."""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from config import Settings
from tests.chat import Chat, chat_node
from tests.harness import eventually
from tests.integration.test_cli_operations import eddy

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a5d4e15d0000000049454e44ae426082")
IMAGES = {"image": {"enabled": True, "number_limits": 1, "detail": "low",
                    "transfer_methods": ["local_file"]}}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A storage of the test's own (the clean-ups scan all of it), for the node and the
    `eddy` commands."""
    monkeypatch.setenv("OPENDAL_FS_ROOT", str(tmp_path))
    return settings.model_copy(update={"OPENDAL_FS_ROOT": tmp_path})


async def _upload(chat: Chat, name: str) -> dict[str, Any]:
    answer = await chat.node.client.post("/v1/files/upload", headers=chat.key,
                                         files={"file": (name, PNG, "image/png")},
                                         data={"user": "ann"})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def _preview(chat: Chat, file_id: str) -> int:
    return (await chat.node.client.get(f"/v1/files/{file_id}/preview",
                                       headers=chat.key)).status_code


async def test_orphaned_files_on_storage_are_removed_and_used_ones_kept(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async with chat_node(settings) as chat:
        storage = chat.node.container.storage
        kept = await _upload(chat, "kept.png")
        tenant = (await storage.scan("upload_files/"))[0].split("/")[1]
        strays = [f"upload_files/{tenant}/{uuid4()}.png",
                  f"datasets/{uuid4()}/{uuid4()}/source/gone.txt"]
        for key in strays:
            await storage.save(key, b"left behind")

        monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
        code, out, err = await eddy("remove-orphaned-files-on-storage")
        assert code == 1 and "Do you want to proceed?" in out and "Aborted!" in err
        assert all([await storage.exists(k) for k in strays])

        code, out, err = await eddy("remove-orphaned-files-on-storage", "--force")
        assert code == 0, err
        assert "Found 1 files in tables." in out and "Found 3 files on storage." in out
        assert sorted(line.removeprefix("- orphaned file: ") for line in out.splitlines()
                      if line.startswith("- orphaned file: ")) == sorted(strays)
        assert out.splitlines()[-1] == "Removed 2 orphaned files without errors."
        assert not any([await storage.exists(k) for k in strays])
        assert await _preview(chat, kept["id"]) == 200

        code, out, _ = await eddy("remove-orphaned-files-on-storage", "-f")
        assert code == 0 and out.splitlines()[-1] == (
            "No orphaned files found. There is nothing to remove.")


async def test_orphaned_file_records_are_cleared(settings: Settings) -> None:
    async with chat_node(settings) as chat:
        await chat.configure(file_upload=IMAGES)
        used, gone, unused = [await _upload(chat, f"{n}.png") for n in ("used", "gone", "unused")]
        answer = await chat.send("What is this?", files=[{
            "type": "image", "transfer_method": "local_file", "upload_file_id": used["id"]}])
        assert answer.status_code == 200, answer.text
        storage = chat.node.container.storage
        (gone_key,) = [k for k in await storage.scan("upload_files/") if gone["id"] in k]
        await storage.delete(gone_key)
        assert await _preview(chat, gone["id"]) == 404  # a record whose bytes are gone

        code, out, err = await eddy("clear-orphaned-file-records", "--force")
        assert code == 0, err
        assert "- messages (files)" in out and "Found 3 files in tables." in out
        assert {line.removeprefix("- orphaned file id: ") for line in out.splitlines()
                if line.startswith("- orphaned file id: ")} == {gone["id"], unused["id"]}
        assert out.splitlines()[-1] == "Removed 2 orphaned file records."
        assert await _preview(chat, used["id"]) == 200
        # The records' removal reaches the read model next.
        assert await _preview(chat, gone["id"]) == 404
        await eventually(partial(_preview, chat, unused["id"]), expect=404)
