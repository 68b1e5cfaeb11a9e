"""The `document-extractor` node, as Dify's (core/workflow/nodes/document_extractor): the
text of a file (`text`: a string) or of each file of a list (`text`: an array of strings),
the type told by the file's extension, else by its MIME type.

The knowledge indexing's extractors (indexing/extract.py) read PDF and DOCX and decode plain
text; as in Dify, HTML, XML and source code are kept as their text, JSON and YAML are
printed again tidily, and a CSV becomes a Markdown table. Office formats other than DOCX
(doc, xls(x), ppt(x)), e-books and mail need libraries Eddy does not ship: they fail the node
with "Unsupported Extension Type"."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from indexing.extract import ExtractionError, decode_text, extract_text
from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workers.workflow.nodes.files import FileUnavailable, load_file
from workflow_graph.files import is_file
from workflow_graph.variables import MISSING

_PLAIN_EXTENSIONS = frozenset({
    ".txt", ".markdown", ".md", ".mdx", ".html", ".htm", ".xml", ".c", ".h", ".cpp", ".hpp",
    ".cc", ".cxx", ".c++", ".py", ".js", ".ts", ".jsx", ".tsx", ".java", ".php", ".rb", ".go",
    ".rs", ".swift", ".kt", ".scala", ".sh", ".bash", ".bat", ".ps1", ".sql", ".r", ".m",
    ".pl", ".lua", ".vim", ".asm", ".s", ".css", ".scss", ".less", ".sass", ".ini", ".cfg",
    ".conf", ".toml", ".env", ".log", ".vtt",
})
_MIME_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "text/htm": ".html", "text/markdown": ".md",
    "text/xml": ".xml", "text/vtt": ".vtt", "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "text/csv": ".csv", "application/json": ".json", "application/x-yaml": ".yaml",
    "text/yaml": ".yaml", "text/properties": ".properties",
}


async def run(call: NodeCall) -> NodeResult:
    selector = list(call.node.data.get("variable_selector") or [])
    value = call.pool.get(selector)
    if value is MISSING:
        raise NodeError(f"File variable not found for selector: {selector}")
    if value and not (is_file(value) or _is_file_list(value)):
        raise NodeError(f"Variable {selector} is not an ArrayFileSegment")
    inputs = {"variable_selector": selector}
    if isinstance(value, list):
        text: str | list[str] = [await _text_of(call, file) for file in value]
    elif is_file(value):
        text = await _text_of(call, value)
    else:
        raise NodeError(f"Unsupported variable type: {type(value).__name__}",
                        "DocumentExtractorError")
    return NodeResult(outputs={"text": text}, inputs=inputs,
                      process_data={"documents": value if isinstance(value, list) else [value]})


def _is_file_list(value: Any) -> bool:
    return isinstance(value, list) and all(is_file(v) for v in value)


async def _text_of(call: NodeCall, file: Mapping[str, Any]) -> str:
    extension = str(file.get("extension") or "").lower()
    if extension and not extension.startswith("."):
        extension = "." + extension
    mime_type = str(file.get("mime_type") or "").split(";")[0].strip().lower()
    if not extension:
        if not mime_type:
            raise NodeError("Unable to determine file type: MIME type or file extension is "
                            "missing", "UnsupportedFileTypeError")
        if mime_type not in _MIME_EXTENSIONS:
            raise NodeError(f"Unsupported MIME type: {mime_type}", "UnsupportedFileTypeError")
        extension = _MIME_EXTENSIONS[mime_type]
    name = str(file.get("filename") or "file")
    extractor = _extractor(extension, name if name.lower().endswith(extension)
                           else name + extension)
    try:
        data = await load_file(call, file)
    except FileUnavailable as error:
        raise NodeError(str(error), "FileDownloadError") from None
    try:
        # parsing a PDF is CPU work: off the event loop the other runs share
        return await asyncio.to_thread(extractor, data)
    except (ExtractionError, ValueError, yaml.YAMLError, csv.Error) as error:
        raise NodeError(f"Failed to extract text from {extension.lstrip('.').upper()}: "
                        f"{error}", "TextExtractionError") from None


def _extractor(extension: str, filename: str) -> Callable[[bytes], str]:
    """How to read a file of this extension; `filename` ends with it."""
    if extension in _PLAIN_EXTENSIONS:
        return decode_text
    if extension in (".pdf", ".docx"):
        return lambda data: extract_text(data, filename).text
    known: dict[str, Callable[[bytes], str]] = {
        ".json": _json, ".yaml": _yaml, ".yml": _yaml, ".csv": _csv_table,
        ".properties": _properties,
    }
    if extension not in known:
        raise NodeError(f"Unsupported Extension Type: {extension}", "UnsupportedFileTypeError")
    return known[extension]


def _json(data: bytes) -> str:
    return json.dumps(json.loads(decode_text(data)), indent=2, ensure_ascii=False)


def _yaml(data: bytes) -> str:
    documents = yaml.safe_load_all(decode_text(data))
    return yaml.dump_all(documents, allow_unicode=True, sort_keys=False)


def _csv_table(data: bytes) -> str:
    """Dify's CSV text: a Markdown table, line breaks inside cells made spaces."""
    rows = list(csv.reader(io.StringIO(decode_text(data))))
    if not rows:
        return ""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("\n", " ").replace("\r", "") for c in cells) + " |\n"

    return line(rows[0]) + line(["-" * len(c) for c in rows[0]]) + "".join(
        line(row) for row in rows[1:])


def _properties(data: bytes) -> str:
    """Java properties as `key: value` lines, comments and blank lines kept."""
    lines = []
    for raw in decode_text(data).splitlines():
        text = raw.strip()
        if not text or text.startswith(("#", "!")):
            lines.append(text)
            continue
        separator = "=" if "=" in text else ":" if ":" in text else None
        key, _, value = text.partition(separator) if separator else (text, "", "")
        lines.append(f"{key.strip()}: {value.strip()}")
    return "\n".join(lines)
