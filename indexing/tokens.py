"""Deterministic token-count approximation, used when no model tokenizer is given."""

from __future__ import annotations

import re

# One CJK/kana/hangul character ~ one token in BPE vocabularies, so each counts alone.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN_RE = re.compile(
    rf"[{_CJK}]"  # a single CJK character
    rf"|[^\W_{_CJK}]+"  # a run of letters/digits (CJK excluded so it never swallows them)
    r"|\S"  # any other visible character (punctuation, symbols, underscore)
)
# Long words become several BPE tokens; ~6 characters per piece keeps common words at 1.
_CHARS_PER_WORD_TOKEN = 6


def count_tokens_approx(text: str) -> int:
    """Approximate token count: word runs count ceil(len/6), CJK chars and symbols count 1.

    Whitespace is free. The count is sub-additive under concatenation (joining two texts
    never yields more than the sum of their counts), which the splitter relies on to keep
    merged chunks within ``max_tokens``.
    """
    total = 0
    for match in _TOKEN_RE.finditer(text):
        n = match.end() - match.start()
        total += -(-n // _CHARS_PER_WORD_TOKEN) if n > 1 else 1
    return total
