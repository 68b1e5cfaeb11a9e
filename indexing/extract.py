"""Turn uploaded file bytes into plain text (Dify's ExtractProcessor, without I/O)."""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass

from bs4 import BeautifulSoup, Tag


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    text: str
    pages: int | None = None  # known for paginated formats (PDF) only


class ExtractionError(ValueError):
    """The file has a supported type but could not be parsed (corrupt, encrypted...)."""


class UnsupportedFileType(ValueError):
    def __init__(self, extension: str) -> None:
        self.extension = extension
        super().__init__(f"unsupported file type: {extension or '(no extension)'}")


_MIME_TO_EXT = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "text/csv": ".csv",
    "application/csv": ".csv",
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}


# Non-ASCII characters that Western European text in Windows-1252 is made of, besides
# letters: typographic quotes/dashes, currency, NBSP...
_CP1252_SYMBOLS = frozenset(
    "\xa0\xa1\xa2\xa3\xa7\xa9\xab\xae\xb0\xb7\xbb\xbf\xd7"  # NBSP, currency, guillemets, times...
    "\u2013\u2014\u2018\u2019\u201a\u201c\u201d\u201e\u2022\u2026\u20ac\u2122"  # dashes, quotes, €
)


def _as_western(data: bytes) -> str | None:
    """Windows-1252 decoding if the bytes look like Western European text, else None.

    Charset detection is unreliable on short inputs (it reads b"caf\xe9" as UTF-16), and
    Windows-1252 is by far the most common non-UTF-8 upload. Text in another single-byte
    code page decoded as 1252 shows symbols (Polish) or is mostly non-ASCII (Cyrillic).
    """
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    non_ascii = [c for c in text if ord(c) > 127]
    if any(not (c.isalpha() or c in _CP1252_SYMBOLS) for c in non_ascii):
        return None
    letters = sum(c.isalpha() for c in text)
    if letters and sum(c.isalpha() for c in non_ascii) * 2 > letters:
        return None
    return text


def decode_text(data: bytes) -> str:
    """UTF-8 (BOM tolerated), BOM-marked UTF-16, Western 1252, detection, then latin-1."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    western = _as_western(data)
    if western is not None:
        return western
    try:  # optional: present in most installs (requests depends on it)
        from charset_normalizer import from_bytes
    except ImportError:
        from_bytes = None  # type: ignore[assignment]
    if from_bytes is not None:
        for match in from_bytes(data):
            # BOM-less UTF-16/32 text always has NUL bytes; without any, the guess is noise.
            if match.encoding.startswith(("utf_16", "utf_32")) and b"\x00" not in data:
                continue
            return str(match)
    # latin-1 maps every byte, so decoding can no longer fail.
    return data.decode("latin-1")


def _extract_plain(data: bytes) -> ExtractedDocument:
    return ExtractedDocument(decode_text(data))


# Elements whose boundaries are line breaks when rendered; used to keep words of adjacent
# blocks (<p>a</p><p>b</p>) from being glued together by get_text().
_BLOCK_TAGS = (
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul", "title",
    "td", "th",
)  # fmt: skip
# Never rendered: their text is code, CSS or fallback markup, not document content.
_INVISIBLE_TAGS = ["script", "style", "noscript", "template", "iframe"]


def _extract_html(data: bytes) -> ExtractedDocument:
    # bytes, not str: BeautifulSoup honours a <meta charset> before guessing.
    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(_INVISIBLE_TAGS):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(_BLOCK_TAGS):
        if isinstance(block, Tag):
            block.insert_before("\n")
            block.insert_after("\n")
    lines = (" ".join(line.split()) for line in soup.get_text().splitlines())
    return ExtractedDocument("\n".join(line for line in lines if line))


def _extract_csv(data: bytes) -> ExtractedDocument:
    text = decode_text(data)
    # Excel in many locales writes ';' (or tab) separated "CSV": pick whichever of the
    # common delimiters occurs most in the header line, comma on a tie.
    header_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=header_line.count)
    try:
        rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(row)]
    except csv.Error as exc:
        raise ExtractionError(f"invalid CSV: {exc}") from exc
    if not rows:
        return ExtractedDocument("")
    header = [name.strip() for name in rows[0]]
    lines = []
    for row in rows[1:]:
        # Short rows are padded, cells beyond the header are dropped.
        cells = ([cell.strip() for cell in row] + [""] * len(header))[: len(header)]
        # Dify's CSVExtractor: one line per row, "column: value" pairs joined by ';'.
        pairs = zip(header, cells, strict=True)
        lines.append(";".join(f"{name}: {value}" for name, value in pairs))
    return ExtractedDocument("\n".join(lines))


def _extract_pdf(data: bytes) -> ExtractedDocument:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        # Owner-password-only PDFs open with the empty user password; others cannot.
        raise ExtractionError("PDF is password protected")
    texts = [(page.extract_text() or "").strip() for page in reader.pages]
    # Blank (e.g. scanned image) pages add nothing but empty paragraphs.
    return ExtractedDocument("\n\n".join(t for t in texts if t), pages=len(texts))


def _table_to_markdown(rows: list[list[str]]) -> str:
    # Same shape as Dify's WordExtractor: first row is the header.
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("\n", " ").strip() for c in cells) + " |"

    width = max(len(r) for r in rows)
    padded = [r + [""] * (width - len(r)) for r in rows]
    body = [line(padded[0]), line(["---"] * width)] + [line(r) for r in padded[1:]]
    return "\n".join(body)


def _extract_docx(data: bytes) -> ExtractedDocument:
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    blocks: list[str] = []
    # Body order, so a table stays between the paragraphs that introduce and follow it.
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = [[cell.text for cell in row.cells] for row in item.rows]
            if any(any(c.strip() for c in r) for r in rows):
                blocks.append(_table_to_markdown(rows))
        elif item.text.strip():
            blocks.append(item.text)
    return ExtractedDocument("\n".join(blocks))


_EXTRACTORS: dict[str, Callable[[bytes], ExtractedDocument]] = {
    ".txt": _extract_plain,
    ".text": _extract_plain,
    ".md": _extract_plain,
    ".markdown": _extract_plain,
    ".mdx": _extract_plain,
    ".html": _extract_html,
    ".htm": _extract_html,
    ".csv": _extract_csv,
    ".pdf": _extract_pdf,
    ".docx": _extract_docx,
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_EXTRACTORS)


def _resolve_extension(filename: str, mime_type: str | None) -> str:
    ext = os.path.splitext(filename)[1].lower()
    if ext in _EXTRACTORS:
        return ext
    # The name wins when it is known; the MIME type rescues names without a usable suffix.
    mime = (mime_type or "").split(";", 1)[0].strip().lower()
    if mime in _MIME_TO_EXT:
        return _MIME_TO_EXT[mime]
    raise UnsupportedFileType(ext or mime)


def extract_text(data: bytes, filename: str, mime_type: str | None = None) -> ExtractedDocument:
    """Extract the text of an uploaded file.

    Raises UnsupportedFileType for types outside SUPPORTED_EXTENSIONS and ExtractionError
    when a supported file cannot be parsed.
    """
    extractor = _EXTRACTORS[_resolve_extension(filename, mime_type)]
    try:
        extracted = extractor(data)
    except ExtractionError:
        raise
    except Exception as exc:
        # Third-party parsers raise anything (KeyError, zipfile.BadZipFile, struct.error...)
        # on malformed input; callers need one type to report "corrupt file".
        raise ExtractionError(f"could not read {filename or 'file'}: {exc}") from exc
    # A NUL (a PDF's or a UTF-16 file's padding) is no text, and Postgres text refuses it.
    if "\x00" in extracted.text:
        return ExtractedDocument(extracted.text.replace("\x00", ""), extracted.pages)
    return extracted
