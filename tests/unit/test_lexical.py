"""Words for full-text search in Chinese, Japanese and Korean (indexing/lexical.py)."""

from __future__ import annotations

import subprocess
import sys

from indexing.lexical import extract_keywords, index_terms, query_terms


def test_text_without_cjk_is_left_exactly_as_it_is() -> None:
    for text in ["The quick brown fox, e-mail: a@b.c", "", "  spaced  out \n lines"]:
        assert index_terms(text) == text
        assert query_terms(text) == text


def test_chinese_is_cut_into_words_and_their_dictionary_parts() -> None:
    words = index_terms("我们的知识库支持向量检索和全文检索。").split()
    assert {"知识库", "知识", "向量", "检索", "全文检索", "全文"} <= set(words)
    assert "。" not in words  # punctuation is no word
    # Latin words inside Chinese text are set apart and kept as written.
    assert index_terms("Eddy的知识库用pgvector存储").split()[:2] == ["Eddy", "的"]
    assert "pgvector" in index_terms("Eddy的知识库用pgvector存储").split()


def test_a_chinese_query_keeps_its_meaningful_words_and_its_syntax() -> None:
    assert query_terms("向量检索") == "向量 检索"
    assert query_terms("知识库") == "知识库"
    assert query_terms("什么是向量检索？") == "向量 检索"  # question words are no requirement
    assert query_terms("什么") == "什么"  # unless nothing else is left
    assert query_terms("知识库 -向量检索") == "知识库 -向量 -检索"
    assert query_terms('"全文检索" or 知识库') == '"全文检索" or 知识库'


def test_japanese_and_korean_become_character_pairs() -> None:
    assert set(query_terms("ベクトル検索").split()) == {"ベク", "クト", "トル", "ル検", "検索"}
    assert set(query_terms("ベクトル検索").split()) <= set(
        index_terms("このシステムはベクトル検索に対応しています。").split())
    assert query_terms("검색") == "검색"
    assert "검색" in index_terms("벡터 검색을 지원합니다").split()
    # a kanji-only query is cut like the kanji inside a Japanese text
    assert set(query_terms("天気").split()) <= set(index_terms("東京の天気は晴れ").split())


def test_keywords_of_chinese_and_english_segments() -> None:
    text = "知识库支持向量检索。向量检索把文本变成向量，再按距离找到最相近的段落。"
    keywords = extract_keywords(text)
    assert keywords[:2] == ["向量", "检索"] and "知识库" in keywords
    assert not {"的", "是", "把"} & set(keywords) and len(keywords) <= 10
    assert "otters" in extract_keywords("Sea otters wrap themselves in kelp; otters sleep.")
    assert extract_keywords("   ") == []


def test_jieba_loads_from_the_wheel_once_and_quietly() -> None:
    # A fresh interpreter with networking unusable: the dictionary ships in the wheel. Text
    # without CJK never loads it; the first CJK text loads it for the whole process.
    code = (
        "import socket, sys\n"
        "socket.socket = None\n"
        "from indexing import lexical\n"
        "lexical.index_terms('plain words'); lexical.query_terms('plain')\n"
        "assert 'jieba' not in sys.modules\n"
        "assert lexical.index_terms('知识库') == '知识 知识库'\n"
        "import jieba\n"
        "assert jieba.dt.initialized and lexical._segmenter() is jieba\n"
        "assert set(lexical.extract_keywords('向量检索')) == {'向量', '检索'}\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Building prefix dict" not in done.stderr  # jieba's chatter is silenced
