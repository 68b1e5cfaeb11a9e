"""Words for full-text and keyword search in any script: Chinese, Japanese and Korean have no
spaces between words, so their text is cut into words before a store indexes it.

* Chinese (a run of Han characters): jieba, as Dify does. The index gets jieba's search
  mode (each word plus the dictionary words inside it: 知识库 -> 知识, 知识库), the query its
  precise mode (知识库), so a query word is found inside longer words of the document.
* Japanese and Korean (a run holding kana or hangul): overlapping character pairs
  (bigrams), the usual fallback without a morphological dictionary; the Han words inside a
  Japanese run are also indexed through jieba, so a kanji-only query finds them.
* Everything else is left exactly as it is: the stores' own word rules (Postgres' parser,
  Weaviate's word tokenizer) keep handling Latin text as before.

The result is the text with every CJK run replaced by its words separated by spaces, which
each store indexes in place of the raw text. jieba loads its dictionary (shipped inside the
wheel; nothing is downloaded) once per process, on the first CJK text, so English-only use
never pays for it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from types import ModuleType

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
_CJK_RUN = re.compile(f"[{_HAN}{_KANA}{_HANGUL}]+")
_HAN_RUN = re.compile(f"[{_HAN}]+")
_NOT_HAN = re.compile(f"[^{_HAN}]")
_WORD = re.compile(r"\w", re.UNICODE)
# CJK and full-width punctuation (ideographic full stop, comma, brackets ...): Postgres'
# parser may take it for letters in some locales, so it becomes a space before indexing.
_CJK_PUNCTUATION = re.compile("[\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40"
                              "\uff5b-\uff65]")
# websearch syntax of a query: "quoted phrases" (an unterminated quote runs to the end) or
# bare terms; operators (or, -term) pass through unchanged.
_QUERY_TERM = re.compile(r'"([^"]*)"?|(\S+)')

# Function words and question words a Chinese query carries but a document need not
# (什么是向量检索 must find a text about 向量检索); dropped from queries and keywords.
CHINESE_STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 吗 呢 吧 啊 呀 么 之 其 而 并 被 把 给 对 从 向 于 以 就 都 也 "
    "还 又 很 这 那 这个 那个 这些 那些 什么 怎么 怎样 如何 哪些 哪个 哪里 为什么 为何 "
    "是否 能否 可以 请问 请 一下 一个 一些 我 你 您 他 她 它 我们 你们 他们 它们".split())
MAX_KEYWORDS = 10  # Dify's max_keywords_per_chunk

_lock = threading.Lock()
_jieba: ModuleType | None = None
_analyse: ModuleType | None = None


def _segmenter() -> ModuleType:
    """jieba with its dictionary loaded (once per process, thread-safe)."""
    global _jieba
    if _jieba is None:
        with _lock:
            if _jieba is None:
                import jieba

                # jieba announces every dictionary load on stderr; our logs say enough.
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def _keyword_extractor() -> ModuleType:
    """jieba.analyse (TF-IDF over jieba's IDF table, loaded on import) with our stop words."""
    global _analyse
    if _analyse is None:
        _segmenter()
        with _lock:
            if _analyse is None:
                import jieba.analyse

                tfidf = jieba.analyse.default_tfidf
                tfidf.stop_words = set(tfidf.stop_words) | CHINESE_STOPWORDS
                _analyse = jieba.analyse
    return _analyse


def has_cjk(text: str) -> bool:
    return _CJK_RUN.search(text) is not None


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) < 2 else [run[i:i + 2] for i in range(len(run) - 1)]


def _words(tokens: Iterable[str]) -> list[str]:
    # jieba returns punctuation and spaces as tokens too; only words are searchable.
    return [t for t in (t.strip() for t in tokens) if _WORD.search(t)]


def _run_index_words(run: str) -> list[str]:
    if _NOT_HAN.search(run) is None:
        return _words(_segmenter().cut_for_search(run))
    words = _bigrams(run)
    for han in _HAN_RUN.findall(run):
        words += _words(_segmenter().cut_for_search(han))
    return words


def _run_query_words(run: str) -> list[str]:
    if _NOT_HAN.search(run) is not None:
        return _bigrams(run)
    words = _words(_segmenter().cut(run))
    meaningful = [w for w in words if w not in CHINESE_STOPWORDS]
    return meaningful or words  # a query of stop words only still searches for them


def _rewrite(text: str, words_of: Callable[[str], list[str]]) -> str:
    """`text` with each CJK run replaced by its words, set apart by spaces."""
    if not has_cjk(text):
        return text
    words = _CJK_RUN.sub(lambda m: " " + " ".join(words_of(m.group())) + " ", text)
    return " ".join(_CJK_PUNCTUATION.sub(" ", words).split())


def index_terms(text: str) -> str:
    """What full-text search indexes for `text` (the text itself when it has no CJK)."""
    return _rewrite(text, _run_index_words)


def query_terms(query: str) -> str:
    """A full-text query with its CJK words cut like the index's, its syntax kept: a quoted
    phrase stays one phrase, `-term` excludes every word of the term."""
    if not has_cjk(query):
        return query
    parts: list[str] = []
    for match in _QUERY_TERM.finditer(query):
        phrase, bare = match.group(1), match.group(2)
        if phrase is not None:
            parts.append('"' + " ".join(_rewrite(phrase, _run_query_words).split()) + '"')
            continue
        negated = bare.startswith("-") and len(bare) > 1
        words = _rewrite(bare[1:] if negated else bare, _run_query_words).split()
        parts += ["-" + w for w in words] if negated else words
    return " ".join(parts)


def extract_keywords(text: str, limit: int = MAX_KEYWORDS) -> list[str]:
    """A segment's keywords, as Dify's jieba keyword table extracts them: the `limit` words
    of highest TF-IDF (jieba's IDF table), without stop words."""
    if not text.strip():
        return []
    return [str(k) for k in _keyword_extractor().extract_tags(text, topK=limit)]
