"""Signed file links and ZIP entry names (gateway.knowledge.files), without a server."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.knowledge.files import (
    content_disposition,
    signature_valid,
    signed_file_url,
    zip_entry_names,
)

SECRET = "test-secret"
FILE = "9b6c2a0e-2f7e-4a49-8d0e-1f0f2b3c4d5e"


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_signed_link_opens_its_file_only_until_it_expires() -> None:
    url = signed_file_url("https://api.example.com/", SECRET, FILE, as_attachment=True)
    assert url.startswith(f"https://api.example.com/files/{FILE}/file-preview?")
    q = _query(url)
    assert q["as_attachment"] == "true"
    assert signature_valid(SECRET, FILE, q["timestamp"], q["nonce"], q["sign"], 300)
    assert not signature_valid("other-secret", FILE, q["timestamp"], q["nonce"], q["sign"], 300)
    assert not signature_valid(SECRET, FILE.replace("9", "8"), q["timestamp"], q["nonce"],
                               q["sign"], 300)
    assert not signature_valid(SECRET, FILE, q["timestamp"], q["nonce"] + "0", q["sign"], 300)
    old = str(int(time.time()) - 301)
    assert not signature_valid(SECRET, FILE, old, q["nonce"], q["sign"], 300)
    assert not signature_valid(SECRET, FILE, "soon", q["nonce"], q["sign"], 300)
    # each link is its own: a new nonce every time
    assert _query(signed_file_url("", SECRET, FILE, as_attachment=False))["nonce"] != q["nonce"]


def test_content_disposition_keeps_non_ascii_names() -> None:
    header = content_disposition("attachment", '季度 "报告".pdf')
    kind, fallback, star = (p.strip() for p in header.split(";"))
    assert kind == "attachment"
    assert fallback == 'filename="__ ____.pdf"'  # ASCII only, no quote inside
    assert star.startswith("filename*=UTF-8''")
    assert unquote(star.removeprefix("filename*=UTF-8''")) == '季度 "报告".pdf'


def test_zip_entry_names_are_safe_and_unique() -> None:
    assert zip_entry_names(["a/b.txt", "c/b.txt", "../b.txt", "x\\b.txt", "b", "  ", "b"]) == [
        "b.txt", "b (1).txt", "b (2).txt", "b (3).txt", "b", "file", "b (1)"]
