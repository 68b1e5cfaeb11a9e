"""document-extractor: the text of uploaded files read from storage (the knowledge
indexing's extractors for PDF and DOCX), Dify's shapes for JSON/YAML/CSV, a list of files, a
remote file through the SSRF guard, and clear failures."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import docx
import pytest

from schemas.conversation.naming import upload_key
from tests.files import make_pdf
from tests.local_http import QuietHandler, serving
from tests.workflow_nodes import TENANT, Services, execute, services
from workers.workflow.nodes.base import NodeError
from workflow_graph.variables import VariablePool


async def _upload(svc: Services, name: str, data: bytes, mime_type: str = "") -> dict[str, Any]:
    """A file as the Service API's upload leaves it: bytes in storage, a mapping in the pool."""
    file_id = uuid4()
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    await svc.storage.save(upload_key(TENANT, file_id, extension), data)
    return {"dify_model_identity": "__dify__file__", "type": "document",
            "transfer_method": "local_file", "related_id": str(file_id), "filename": name,
            "extension": f".{extension}" if extension else "", "mime_type": mime_type,
            "size": len(data), "tenant_id": str(TENANT)}


async def _extract(svc: Services, value: Any) -> Any:
    pool = VariablePool.for_run(system={"files": value})
    result = await execute("document-extractor", {"variable_selector": ["sys", "files"]},
                           pool, svc)
    return result.outputs["text"]


def _docx() -> bytes:
    document = docx.Document()
    document.add_paragraph("Quarterly report")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "city", (0, 1): "sales", (1, 0): "Oslo",
                             (1, 1): "12"}.items():
        table.cell(row, col).text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


async def test_each_supported_kind_of_file_gives_its_text(tmp_path: Path) -> None:
    svc = services(tmp_path)
    cases = [
        (await _upload(svc, "notes.txt", "Grüße aus Köln".encode()), "Grüße aus Köln"),
        (await _upload(svc, "page.html", b"<p>Hi <b>there</b></p>"), "<p>Hi <b>there</b></p>"),
        (await _upload(svc, "data.json", b'{"a":[1,2]}'), '{\n  "a": [\n    1,\n    2\n  ]\n}'),
        (await _upload(svc, "conf.yaml", b"b: 1\na: [x]\n"), "b: 1\na:\n- x\n"),
        (await _upload(svc, "t.csv", b"city,sales\nOslo,12\n"),
         "| city | sales |\n| ---- | ----- |\n| Oslo | 12 |\n"),
        (await _upload(svc, "app.properties", b"# c\nkey = v\nother:w\n"),
         "# c\nkey: v\nother: w"),
        (await _upload(svc, "noext", b"by mime", "text/plain"), "by mime"),
    ]
    for file, expected in cases:
        assert await _extract(svc, file) == expected, file["filename"]
    assert "Hello PDF" in await _extract(svc, await _upload(svc, "r.pdf",
                                                            make_pdf([["Hello PDF"]])))
    text = await _extract(svc, await _upload(svc, "r.docx", _docx()))
    assert "Quarterly report" in text and "| Oslo | 12 |" in text


async def test_a_list_of_files_gives_a_list_of_texts(tmp_path: Path) -> None:
    svc = services(tmp_path)
    files = [await _upload(svc, "a.md", b"# A"), await _upload(svc, "b.txt", b"B")]
    assert await _extract(svc, files) == ["# A", "B"]
    assert await _extract(svc, []) == []


async def test_a_remote_file_is_fetched_through_the_ssrf_guard(tmp_path: Path) -> None:
    class Remote(QuietHandler):
        def do_GET(self) -> None:
            self.reply(200, {"Content-Type": "text/plain", "Content-Length": "6"}, b"remote")

    with serving(Remote) as port:
        file = {"transfer_method": "remote_url", "remote_url": f"http://127.0.0.1:{port}/r.txt",
                "extension": ".txt", "filename": "r.txt"}
        allowed = services(tmp_path, SSRF_ALLOWED_HOSTS="127.0.0.1")
        assert await _extract(allowed, file) == "remote"
        with pytest.raises(NodeError, match=r"127\.0\.0\.1 is not a public address") as refused:
            await _extract(services(tmp_path), file)
    assert refused.value.error_type == "FileDownloadError"


@pytest.mark.parametrize(("name", "data", "message", "error_type"), [
    ("sheet.xlsx", b"PK", "Unsupported Extension Type: .xlsx", "UnsupportedFileTypeError"),
    ("noext", b"x", "Unable to determine file type", "UnsupportedFileTypeError"),
    ("bad.json", b"{nope", "Failed to extract text from JSON", "TextExtractionError"),
    ("broken.pdf", b"%PDF-1.4 garbage", "Failed to extract text from PDF: could not read "
     "broken.pdf",
     "TextExtractionError"),
])
async def test_a_file_that_cannot_be_read_fails_the_node_saying_why(
        tmp_path: Path, name: str, data: bytes, message: str, error_type: str) -> None:
    svc = services(tmp_path)
    with pytest.raises(NodeError, match=message) as failed:
        await _extract(svc, await _upload(svc, name, data))
    assert failed.value.error_type == error_type


async def test_a_file_of_another_tenant_or_gone_from_storage_is_not_found(
        tmp_path: Path) -> None:
    svc = services(tmp_path)
    other_tenant = uuid4()
    theirs = {**await _upload(svc, "theirs.txt", b"secret"), "tenant_id": str(other_tenant)}
    await svc.storage.save(upload_key(other_tenant, UUID(theirs["related_id"]), "txt"),
                           b"secret")
    await svc.storage.delete(upload_key(TENANT, UUID(theirs["related_id"]), "txt"))
    with pytest.raises(NodeError, match=r"theirs\.txt is not in storage"):
        await _extract(svc, theirs)  # looked up under the run's tenant only


async def test_a_variable_that_is_no_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="is not an ArrayFileSegment"):
        await _extract(services(tmp_path), "just text")
    with pytest.raises(NodeError, match="File variable not found"):
        await execute("document-extractor", {"variable_selector": ["x", "y"]},
                      VariablePool.for_run(), services(tmp_path))
