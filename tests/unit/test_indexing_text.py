"""Document text pipeline: extraction, cleaning, segmentation (pure, no I/O)."""

from __future__ import annotations

import io
import random
from itertools import pairwise

import docx
import pytest

from indexing.clean import PreProcessingRules, clean_text
from indexing.extract import (
    SUPPORTED_EXTENSIONS,
    ExtractionError,
    UnsupportedFileType,
    extract_text,
)
from indexing.split import (
    FULL_DOC_MAX_TOKENS,
    ParentChunk,
    ProcessRule,
    SegmentationRule,
    split_hierarchical,
    split_text,
)
from indexing.tokens import count_tokens_approx
from tests.files import make_pdf

# ---------------------------------------------------------------- fixtures / builders


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Revenue grew in every region.")
    table = document.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("Region", "Revenue"), ("EMEA", "120"), ("APAC", "95")]):
        table.cell(r, 0).text = a
        table.cell(r, 1).text = b
    document.add_paragraph("Closing remarks after the table.")
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def prose(sentences: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    words = "data model index query vector token chunk parent child answer".split()
    return " ".join(
        " ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize() + "."
        for _ in range(sentences)
    )


def words_counter(text: str) -> int:
    """A second, simple tokenizer: the splitter must honour whatever counter it is given."""
    return len(text.split())


# ---------------------------------------------------------------- extraction


def test_txt_and_markdown_are_decoded_verbatim() -> None:
    assert extract_text("héllo\nwörld".encode(), "notes.txt").text == "héllo\nwörld"
    md = "# Title\n\nSome *markdown* [link](https://x.io)"
    doc = extract_text(md.encode(), "README.MD")
    assert doc.text == md and doc.pages is None
    assert extract_text(b"\xef\xbb\xbfbom first", "a.markdown").text == "bom first"


def test_text_falls_back_when_not_utf8() -> None:
    assert extract_text("Le café était prêt".encode("cp1252"), "fr.txt").text == (
        "Le café était prêt"
    )
    russian = "Это длинный русский текст, который должен определиться правильно."
    assert extract_text(russian.encode("cp1251"), "ru.txt").text == russian
    assert extract_text("utf16 text".encode("utf-16"), "w.txt").text == "utf16 text"


def test_html_keeps_visible_text_and_drops_scripts_and_styles() -> None:
    html = b"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Doc</title>
    <style>p { color: red }</style><script>var secret = "token";</script></head>
    <body><!-- hidden comment --><h1>Heading</h1><p>Hello <b>bold</b> world</p>
    <p>Second&nbsp;para<br>line two</p><noscript>enable js</noscript>
    <ul><li>one</li><li>two</li></ul></body></html>"""
    text = extract_text(html, "page.htm").text
    assert "Heading\nHello bold world\nSecond para\nline two\none\ntwo" in text
    for hidden in ("secret", "color", "hidden comment", "enable js"):
        assert hidden not in text


def test_csv_rows_become_column_value_lines() -> None:
    data = b'name,age,city\nAlice,30,"Paris, FR"\n\nBob,25\n'
    assert extract_text(data, "people.csv").text == (
        "name: Alice;age: 30;city: Paris, FR\nname: Bob;age: 25;city: "
    )
    # Semicolon-separated exports (Excel in many locales) are recognised too.
    assert extract_text(b"a;b\n1;2\n", "x.csv").text == "a: 1;b: 2"


def test_pdf_pages_are_extracted_and_joined() -> None:
    pdf = make_pdf([["Hello PDF world", "second line"], [], ["Page three (final)"]])
    doc = extract_text(pdf, "report.pdf")
    assert doc.pages == 3
    first, last = doc.text.split("\n\n")
    assert "Hello PDF world" in first and "second line" in first
    assert last == "Page three (final)"


def test_nul_characters_in_extracted_text_are_removed() -> None:
    """A NUL in a file's text (Postgres text refuses it) is dropped, not a failed document."""
    assert extract_text(b"before\x00after", "notes.txt").text == "beforeafter"
    pdf = extract_text(make_pdf([["Hello\x00PDF world"]]), "report.pdf")
    assert "\x00" not in pdf.text and "HelloPDF world" in pdf.text


def test_docx_paragraphs_and_tables_in_order() -> None:
    text = extract_text(make_docx(), "report.docx").text
    assert text == (
        "Quarterly report\n"
        "Revenue grew in every region.\n"
        "| Region | Revenue |\n| --- | --- |\n| EMEA | 120 |\n| APAC | 95 |\n"
        "Closing remarks after the table."
    )


def test_mime_type_rescues_a_name_without_extension() -> None:
    assert extract_text(b"plain", "upload", "text/plain; charset=utf-8").text == "plain"
    assert extract_text(make_pdf([["via mime"]]), "blob", "application/pdf").pages == 1


def test_unsupported_and_corrupt_files_raise_typed_errors() -> None:
    assert {".txt", ".md", ".html", ".htm", ".csv", ".pdf", ".docx"} <= SUPPORTED_EXTENSIONS
    with pytest.raises(UnsupportedFileType) as info:
        extract_text(b"MZ", "setup.exe")
    assert info.value.extension == ".exe"
    with pytest.raises(UnsupportedFileType):
        extract_text(b"", "noext")
    for name in ("broken.pdf", "broken.docx"):
        with pytest.raises(ExtractionError):
            extract_text(b"definitely not a document", name)
    with pytest.raises(ExtractionError):
        extract_text(b"", "empty.pdf")


# ---------------------------------------------------------------- cleaning


def test_invalid_symbols_are_always_removed() -> None:
    raw = "a<|endoftext|>b\x00\x07c\td\r\ne\ufffe"
    assert clean_text(raw, PreProcessingRules()) == "a<endoftext>bc\td\ne"


def test_remove_extra_spaces() -> None:
    raw = "one\n\n\n\n\ntwo   three\t\tfour\u3000\u3000five\tsix"
    assert clean_text(raw, PreProcessingRules(remove_extra_spaces=True)) == (
        "one\n\ntwo three four five\tsix"
    )
    assert clean_text(raw, PreProcessingRules()) == raw


def test_remove_urls_and_emails_keeps_markdown_images() -> None:
    raw = (
        "Mail me at jane.doe+x@example.co.uk or see https://example.com/a?b=1 now.\n"
        "![diagram](https://cdn.example.com/img.png)"
    )
    both = PreProcessingRules(remove_extra_spaces=True, remove_urls_emails=True)
    assert clean_text(raw, both) == (
        "Mail me at or see now.\n![diagram](https://cdn.example.com/img.png)"
    )
    assert "example.com/a" in clean_text(raw, PreProcessingRules())


def test_pre_processing_rules_from_dify() -> None:
    rules = PreProcessingRules.from_dify(
        [
            {"id": "remove_extra_spaces", "enabled": True},
            {"id": "remove_urls_emails", "enabled": False},
        ]
    )
    assert rules == PreProcessingRules(remove_extra_spaces=True, remove_urls_emails=False)
    assert PreProcessingRules.from_dify(rules.to_dify()) == rules
    with pytest.raises(ValueError, match="unknown"):
        PreProcessingRules.from_dify([{"id": "remove_stopwords", "enabled": True}])
    with pytest.raises(ValueError, match="boolean"):
        PreProcessingRules.from_dify([{"id": "remove_urls_emails", "enabled": "yes"}])


# ---------------------------------------------------------------- tokens


def test_token_approximation_is_small_and_deterministic() -> None:
    assert count_tokens_approx("") == 0
    assert count_tokens_approx("hello world") == 2
    assert count_tokens_approx("你好\uff0c世界") == 5  # each CJK char and the full-width comma: 1
    assert count_tokens_approx("internationalization") == 4  # long words cost more
    assert count_tokens_approx("a, b.") == 4


# ---------------------------------------------------------------- segmentation


@pytest.mark.parametrize("counter", [count_tokens_approx, words_counter, len])
def test_every_chunk_respects_max_tokens(counter: object) -> None:
    assert callable(counter)
    text = "\n\n".join(prose(12, seed) for seed in range(8)) + "\n" + "x" * 900
    rule = SegmentationRule(max_tokens=60, chunk_overlap=10)
    chunks = split_text(text, rule, counter)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk and chunk == chunk.strip()
        assert counter(chunk) <= 60


def test_consecutive_chunks_overlap() -> None:
    text = prose(80)  # one long line: the sentence fallback does the cutting
    chunks = split_text(text, SegmentationRule(max_tokens=80, chunk_overlap=30))
    assert len(chunks) > 3
    for previous, current in pairwise(chunks):
        head = current[: current.index(".") + 1]  # first sentence of the next chunk
        assert head in previous, (previous, current)
        assert count_tokens_approx(head) <= 30

    no_overlap = split_text(text, SegmentationRule(max_tokens=80, chunk_overlap=0))
    for previous, current in pairwise(no_overlap):
        assert current[: current.index(".") + 1] not in previous
    # Without overlap the chunks tile the text exactly.
    assert " ".join(no_overlap) == text


CHINESE_SENTENCES = [
    "向量检索把文本变成向量。", "然后按距离找出最相近的文本！", "这样能找到意思相近的内容吗？",
    "知识库支持全文检索和混合检索。", "关键词检索适合经济模式的数据集！", "分段的长度按词元计算？",
]


@pytest.mark.parametrize("counter", [count_tokens_approx, len])
def test_chinese_text_is_cut_after_its_sentence_ends(counter: object) -> None:
    # No spaces and no newlines: the cuts must fall after 。！？, never inside a sentence
    # or before its punctuation (a chunk starting with "？").
    assert callable(counter)
    text = "".join(CHINESE_SENTENCES * 3)
    chunks = split_text(text, SegmentationRule(max_tokens=50, chunk_overlap=0), counter)
    assert len(chunks) > 1
    assert "".join(chunks) == text  # no overlap: the chunks tile the text
    for chunk in chunks:
        assert counter(chunk) <= 50
        assert chunk[-1] in "。\uff01\uff1f" and chunk[0] not in "。\uff01\uff1f", chunk
        assert all(s in CHINESE_SENTENCES for s in _sentences(chunk))


def _sentences(chunk: str) -> list[str]:
    out, current = [], ""
    for char in chunk:
        current += char
        if char in "。\uff01\uff1f":
            out.append(current)
            current = ""
    return out + ([current] if current else [])


def test_chinese_overlap_is_whole_sentences_counted_in_tokens() -> None:
    # Without 。 the cut falls after every ！, and the overlap carries whole sentences.
    text = "".join(s[:-1] + "\uff01" for s in CHINESE_SENTENCES) * 2
    chunks = split_text(text, SegmentationRule(max_tokens=50, chunk_overlap=20))
    assert len(chunks) > 2
    for previous, current in pairwise(chunks):
        head = _sentences(current)[0]
        assert head[:-1] in [s[:-1] for s in CHINESE_SENTENCES] and previous.endswith(head)
        assert count_tokens_approx(head) <= 20
    # every CJK character and every full-width punctuation mark is one token
    assert count_tokens_approx("向量检索。") == 5
    assert count_tokens_approx("对吗\uff1f对\uff01") == 5


def test_custom_separator_is_honoured() -> None:
    sections = [prose(3, seed) for seed in range(5)]
    text = "***".join(sections)
    rule = SegmentationRule(separator="***", max_tokens=50, chunk_overlap=0)
    assert split_text(text, rule) == sections  # each section (~30 tokens) is one chunk
    # Small pieces are merged up to max_tokens, the separator is kept between them.
    merged = split_text("a***b***c", rule)
    assert merged == ["a***b***c"]


def test_newline_separator_keeps_lines_whole() -> None:
    lines = [prose(2, seed) for seed in range(20)]
    chunks = split_text("\n".join(lines), SegmentationRule(max_tokens=60, chunk_overlap=0))
    assert len(chunks) > 1
    assert [line for chunk in chunks for line in chunk.split("\n")] == lines


def test_escaped_newline_separator_is_unescaped() -> None:
    rule = SegmentationRule(separator="\\n", max_tokens=50, chunk_overlap=0)
    assert rule.separator == "\n"
    text = "\n".join(prose(3, seed) for seed in range(3))  # ~30 tokens per line
    assert split_text(text, rule) == text.split("\n")
    parsed = ProcessRule.from_dify(
        {
            "mode": "custom",
            "rules": {
                "pre_processing_rules": [],
                "segmentation": {"separator": "\\n\\n", "max_tokens": 100, "chunk_overlap": 5},
            },
        }
    )
    assert parsed.segmentation.separator == "\n\n"
    assert parsed.to_dict()["rules"]["segmentation"]["separator"] == "\\n\\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 4001}, "between 50 and 4000"),
        ({"max_tokens": 49}, "between 50 and 4000"),
        ({"max_tokens": 100, "chunk_overlap": 100}, "smaller than max_tokens"),
        ({"chunk_overlap": -1}, ">= 0"),
        ({"max_tokens": "500"}, "integer"),
    ],
)
def test_invalid_segmentation_is_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentationRule(**kwargs)  # type: ignore[arg-type]


def test_empty_text_gives_no_chunks() -> None:
    rule = SegmentationRule()
    assert split_text("", rule) == []
    assert split_text(" \n\n\t \n", rule) == []
    assert split_hierarchical("  ", rule, rule, parent_mode="paragraph") == []
    assert split_hierarchical("", None, rule, parent_mode="full-doc") == []


def test_automatic_defaults() -> None:
    rule = ProcessRule.from_dify(None)
    assert rule == ProcessRule.from_dify({"mode": "automatic", "rules": {"junk": 1}})
    assert rule.mode == "automatic"
    assert rule.segmentation == SegmentationRule("\n", 500, 50)
    assert rule.pre_processing == PreProcessingRules(True, False)
    short = "A short document.\nWith two lines."
    assert split_text(short, rule.segmentation) == [short]


# ---------------------------------------------------------------- hierarchical


def test_paragraph_mode_children_belong_to_their_parent() -> None:
    text = "\n\n".join(prose(10, seed) for seed in range(6))
    parent = SegmentationRule(separator="\n\n", max_tokens=150, chunk_overlap=0)
    child = SegmentationRule(separator="\n", max_tokens=50, chunk_overlap=0)
    parents = split_hierarchical(text, parent, child, count_tokens_approx, "paragraph")
    assert len(parents) > 1
    for chunk in parents:
        assert isinstance(chunk, ParentChunk)
        assert count_tokens_approx(chunk.content) <= 150
        assert len(chunk.children) >= 2
        for c in chunk.children:
            assert c in chunk.content and count_tokens_approx(c) <= 50


def test_full_doc_mode_is_one_truncated_parent() -> None:
    child = SegmentationRule(max_tokens=200, chunk_overlap=0)
    text = "\n\n".join(prose(10, seed) for seed in range(4))
    (only,) = split_hierarchical(text, None, child, parent_mode="full-doc")
    assert only.content == text
    assert all(c in only.content for c in only.children)

    huge = " ".join(["word"] * (FULL_DOC_MAX_TOKENS + 500))
    (truncated,) = split_hierarchical(huge, None, child, parent_mode="full-doc")
    assert count_tokens_approx(truncated.content) == FULL_DOC_MAX_TOKENS
    with pytest.raises(ValueError, match="parent_mode"):
        split_hierarchical(text, None, child, parent_mode="chapters")  # type: ignore[arg-type]


# ---------------------------------------------------------------- process_rule parsing


def test_process_rule_custom_and_hierarchical_round_trip() -> None:
    custom = {
        "mode": "custom",
        "rules": {
            "pre_processing_rules": [
                {"id": "remove_extra_spaces", "enabled": False},
                {"id": "remove_urls_emails", "enabled": True},
            ],
            "segmentation": {"separator": "###", "max_tokens": 800, "chunk_overlap": 20},
        },
    }
    rule = ProcessRule.from_dify(custom)
    assert rule.pre_processing == PreProcessingRules(False, True)
    assert rule.segmentation == SegmentationRule("###", 800, 20)
    assert rule.to_dict() == custom

    hierarchical = {
        "mode": "hierarchical",
        "rules": {
            "pre_processing_rules": [{"id": "remove_extra_spaces", "enabled": True}],
            "segmentation": {"separator": "\\n\\n", "max_tokens": 1024},
            "parent_mode": "paragraph",
            "subchunk_segmentation": {"separator": "\\n", "max_tokens": 200},
        },
    }
    rule = ProcessRule.from_dify(hierarchical)
    assert rule.parent_mode == "paragraph"
    assert rule.segmentation == SegmentationRule("\n\n", 1024, 0)  # Dify: overlap defaults 0
    assert rule.subchunk_segmentation == SegmentationRule("\n", 200, 0)
    assert ProcessRule.from_dify(rule.to_dict()) == rule

    full_doc = ProcessRule.from_dify(
        {
            "mode": "hierarchical",
            "rules": {
                "pre_processing_rules": [],
                "parent_mode": "full-doc",
                "subchunk_segmentation": {"separator": "\\n", "max_tokens": 300},
            },
        }
    )
    assert full_doc.parent_mode == "full-doc"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mode": "fancy"}, "mode must be one of"),
        ({"mode": "custom"}, "rules is required"),
        ({"mode": "custom", "rules": {"segmentation": {}}}, "pre_processing_rules is required"),
        ({"mode": "custom", "rules": {"pre_processing_rules": []}}, "segmentation must be"),
        (
            {
                "mode": "custom",
                "rules": {
                    "pre_processing_rules": [],
                    "segmentation": {"separator": "\\n", "max_tokens": 5000},
                },
            },
            r"segmentation: max_tokens must be between 50 and 4000, got 5000",
        ),
        (
            {
                "mode": "custom",
                "rules": {"pre_processing_rules": [], "segmentation": {"max_tokens": 500}},
            },
            "separator is required",
        ),
        (
            {
                "mode": "hierarchical",
                "rules": {"pre_processing_rules": [], "parent_mode": "chapter"},
            },
            "parent_mode must be one of",
        ),
        (
            {
                "mode": "hierarchical",
                "rules": {"pre_processing_rules": [], "parent_mode": "full-doc"},
            },
            "subchunk_segmentation must be",
        ),
        ("custom", "must be an object"),
    ],
)
def test_process_rule_rejects_bad_input(body: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProcessRule.from_dify(body)  # type: ignore[arg-type]


def test_pipeline_end_to_end_on_an_html_upload() -> None:
    """What an upload goes through: extract -> clean -> split with the parsed rule."""
    body = "".join(f"<p>{prose(4, seed)}   Contact ops@example.com</p>" for seed in range(10))
    html = f"<html><body><script>track()</script>{body}</body></html>".encode()
    rule = ProcessRule.from_dify(
        {
            "mode": "custom",
            "rules": {
                "pre_processing_rules": [
                    {"id": "remove_extra_spaces", "enabled": True},
                    {"id": "remove_urls_emails", "enabled": True},
                ],
                "segmentation": {"separator": "\\n", "max_tokens": 100, "chunk_overlap": 10},
            },
        }
    )
    text = clean_text(extract_text(html, "faq.html").text, rule.pre_processing)
    chunks = split_text(text, rule.segmentation)
    assert len(chunks) > 1
    assert all(count_tokens_approx(c) <= 100 for c in chunks)
    assert not any("@" in c or "track()" in c or "  " in c for c in chunks)
