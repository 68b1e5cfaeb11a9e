"""Dify's segmentation: fixed separator first, recursive fallback, token-bounded merging."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, cast, get_args

from indexing.clean import PreProcessingRules
from indexing.tokens import count_tokens_approx

TokenCounter = Callable[[str], int]
Mode = Literal["automatic", "custom", "hierarchical"]
ParentMode = Literal["paragraph", "full-doc"]

MODES: tuple[str, ...] = get_args(Mode)
PARENT_MODES: tuple[str, ...] = get_args(ParentMode)
# Dify's INDEXING_MAX_SEGMENTATION_TOKENS_LENGTH default and its lower bound for custom rules.
MIN_MAX_TOKENS = 50
MAX_MAX_TOKENS = 4000
# Dify truncates the single parent of a "full-doc" hierarchical split at this many tokens.
FULL_DOC_MAX_TOKENS = 10000
# Fallbacks of Dify's FixedRecursiveCharacterTextSplitter, tried in order on oversize pieces;
# Chinese text has no spaces, so its other sentence ends (full-width ! and ?) come before
# the last resort of cutting between characters.
_FULLWIDTH_EXCLAMATION, _FULLWIDTH_QUESTION = "\uff01", "\uff1f"
FALLBACK_SEPARATORS: tuple[str, ...] = (
    "\n\n", "\n", "。", _FULLWIDTH_EXCLAMATION, _FULLWIDTH_QUESTION, ". ", " ", "")
# Where _fit may halve a chunk: after a space or after CJK sentence / clause punctuation.
_BREAK_AFTER = frozenset(" 。\uff01\uff1f\uff1b\uff0c")

_ESCAPES = (("\\n", "\n"), ("\\t", "\t"), ("\\r", "\r"))


def unescape_separator(separator: str) -> str:
    """Dify's UI sends the separator as typed, e.g. the two characters ``\\n``."""
    for escaped, raw in _ESCAPES:
        separator = separator.replace(escaped, raw)
    return separator


def escape_separator(separator: str) -> str:
    for escaped, raw in _ESCAPES:
        separator = separator.replace(raw, escaped)
    return separator


def _require_int(value: object, name: str) -> int:
    # bool is an int subclass; `True` as a token count is certainly a client bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class SegmentationRule:
    separator: str = "\n"
    max_tokens: int = 500
    chunk_overlap: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.separator, str):
            raise ValueError(f"separator must be a string, got {self.separator!r}")
        # Store the real separator so every consumer sees the same value.
        object.__setattr__(self, "separator", unescape_separator(self.separator))
        max_tokens = _require_int(self.max_tokens, "max_tokens")
        overlap = _require_int(self.chunk_overlap, "chunk_overlap")
        if not MIN_MAX_TOKENS <= max_tokens <= MAX_MAX_TOKENS:
            raise ValueError(
                f"max_tokens must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}, "
                f"got {max_tokens}"
            )
        if overlap < 0:
            raise ValueError(f"chunk_overlap must be >= 0, got {overlap}")
        if overlap >= max_tokens:
            raise ValueError(
                f"chunk_overlap ({overlap}) must be smaller than max_tokens ({max_tokens})"
            )

    @classmethod
    def from_dify(cls, body: object, where: str = "segmentation") -> Self:
        """Parse ``{"separator", "max_tokens", "chunk_overlap"}``; missing overlap is 0 as in
        Dify's Segmentation model."""
        if not isinstance(body, Mapping):
            raise ValueError(f"{where} must be an object")
        separator = body.get("separator")
        if not isinstance(separator, str) or not separator:
            raise ValueError(f"{where}.separator is required and must be a non-empty string")
        if body.get("max_tokens") is None:
            raise ValueError(f"{where}.max_tokens is required")
        try:
            return cls(
                separator=separator,
                max_tokens=cast(int, body["max_tokens"]),
                chunk_overlap=cast(int, body.get("chunk_overlap") or 0),
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def to_dify(self) -> dict[str, Any]:
        return {
            "separator": escape_separator(self.separator),
            "max_tokens": self.max_tokens,
            "chunk_overlap": self.chunk_overlap,
        }


@dataclass(frozen=True, slots=True)
class ParentChunk:
    content: str
    children: list[str]


class _Splitter:
    """langchain's RecursiveCharacterTextSplitter as Dify's fixed-separator variant uses it.

    Pieces cut on the user's separator drop it and are re-joined with it when merged, so a
    chunk is a verbatim span of the input; fallback separators stay attached to the end of
    their piece (``"sentence. "``) so no chunk starts with stray punctuation.
    """

    def __init__(self, rule: SegmentationRule, count_tokens: TokenCounter,
                 merge_fixed: bool = True) -> None:
        self._merge_fixed = merge_fixed
        self._max = rule.max_tokens
        self._overlap = rule.chunk_overlap
        self._count = count_tokens
        self._fixed = rule.separator
        head = [rule.separator] if rule.separator else []
        self._separators = head + [s for s in FALLBACK_SEPARATORS if s != rule.separator]

    def split(self, text: str) -> list[str]:
        chunks = (c.strip() for c in self._split(text, self._separators))
        return [piece for chunk in chunks if chunk for piece in self._fit(chunk)]

    def _split(self, text: str, separators: list[str]) -> list[str]:
        separator, rest = "", []
        for i, candidate in enumerate(separators):
            if candidate == "" or candidate in text:
                separator, rest = candidate, separators[i + 1 :]
                break
        pieces, joiner = self._cut(text, separator)

        out: list[str] = []
        good: list[tuple[str, int]] = []
        # Dify's custom rules keep every piece cut on the user's separator as its own chunk
        # (FixedRecursiveCharacterTextSplitter); only automatic mode packs small pieces.
        keep_apart = separator == self._fixed and separator != "" and not self._merge_fixed
        for piece in pieces:
            n = self._count(piece)
            if n <= self._max and keep_apart:
                out.append(piece)
                continue
            if n <= self._max:
                good.append((piece, n))
                continue
            if good:
                out.extend(self._merge(good, joiner))
                good = []
            # Too long even alone: cut it with the next separator (or keep it; _fit handles it).
            out.extend(self._split(piece, rest) if rest else [piece])
        if good:
            out.extend(self._merge(good, joiner))
        return out

    def _cut(self, text: str, separator: str) -> tuple[list[str], str]:
        if separator == "":
            return list(text), ""
        parts = text.split(separator)
        if separator == self._fixed:
            return parts, separator
        kept = [p + separator for p in parts[:-1]] + [parts[-1]]
        return [p for p in kept if p], ""

    def _merge(self, pieces: list[tuple[str, int]], joiner: str) -> list[str]:
        """Greedily pack pieces up to max_tokens, carrying <= chunk_overlap tokens forward."""
        sep_len = self._count(joiner) if joiner else 0
        docs: list[str] = []
        current: deque[tuple[str, int]] = deque()
        total = 0  # tokens of current pieces + separators between them
        for piece, n in pieces:
            if current and total + sep_len + n > self._max:
                docs.append(joiner.join(p for p, _ in current))
                # Drop from the front until the tail fits the overlap budget and leaves
                # room for the incoming piece.
                while current and (total > self._overlap or total + sep_len + n > self._max):
                    _, first = current.popleft()
                    total -= first + (sep_len if current else 0)
            total += n + (sep_len if current else 0)
            current.append((piece, n))
        if current:
            docs.append(joiner.join(p for p, _ in current))
        return docs

    def _fit(self, chunk: str) -> list[str]:
        """Safety net for tokenizers whose counts are not additive over pieces: halve at
        the break (a space, or after CJK punctuation) nearest the middle until every part
        is within max_tokens."""
        if len(chunk) < 2 or self._count(chunk) <= self._max:
            return [chunk]
        mid = len(chunk) // 2
        left = next((i + 1 for i in range(mid - 1, 0, -1) if chunk[i] in _BREAK_AFTER), 0)
        right = next((i + 1 for i in range(mid, len(chunk) - 1) if chunk[i] in _BREAK_AFTER), 0)
        candidates = [i for i in (left, right) if i > 0]
        cut = min(candidates, key=lambda i: abs(i - mid)) if candidates else mid
        halves = (chunk[:cut].strip(), chunk[cut:].strip())
        return [part for half in halves if half for part in self._fit(half)]


def split_text(
    text: str,
    rule: SegmentationRule | None = None,
    count_tokens: TokenCounter = count_tokens_approx,
    merge_pieces: bool = True,
) -> list[str]:
    """Split ``text`` into stripped, non-empty chunks of at most ``rule.max_tokens`` tokens.

    Cuts on ``rule.separator`` first, re-cuts oversize pieces with FALLBACK_SEPARATORS, then
    merges neighbouring pieces with ``rule.chunk_overlap`` tokens of overlap.
    """
    if not text.strip():
        return []
    return _Splitter(rule or SegmentationRule(), count_tokens, merge_pieces).split(text)


def _truncate_tokens(text: str, limit: int, count_tokens: TokenCounter) -> str:
    if count_tokens(text) <= limit:
        return text
    # Longest prefix within the limit; binary search keeps it O(log n) tokenizer calls.
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def split_hierarchical(
    text: str,
    parent_rule: SegmentationRule | None,
    child_rule: SegmentationRule,
    count_tokens: TokenCounter = count_tokens_approx,
    parent_mode: ParentMode = "paragraph",
) -> list[ParentChunk]:
    """Dify's parent/child chunking: parents give the LLM context, children are embedded.

    ``"full-doc"``: the whole text (truncated to FULL_DOC_MAX_TOKENS) is the only parent and
    ``parent_rule`` is ignored. ``"paragraph"``: parents are ``split_text(text, parent_rule)``.
    """
    if parent_mode == "full-doc":
        whole = _truncate_tokens(text.strip(), FULL_DOC_MAX_TOKENS, count_tokens).strip()
        parents = [whole] if whole else []
    elif parent_mode == "paragraph":
        parents = split_text(text, parent_rule, count_tokens, merge_pieces=False)
    else:
        raise ValueError(
            f"parent_mode must be one of {', '.join(PARENT_MODES)}, got {parent_mode!r}"
        )
    return [ParentChunk(p, split_text(p, child_rule, count_tokens, merge_pieces=False))
            for p in parents]


def _automatic_pre_processing() -> PreProcessingRules:
    # Dify's DatasetProcessRule.AUTOMATIC_RULES.
    return PreProcessingRules(remove_extra_spaces=True, remove_urls_emails=False)


@dataclass(frozen=True, slots=True)
class ProcessRule:
    """Dify's ``process_rule`` body. Defaults are the automatic mode."""

    mode: Mode = "automatic"
    pre_processing: PreProcessingRules = field(default_factory=_automatic_pre_processing)
    segmentation: SegmentationRule = field(default_factory=SegmentationRule)
    parent_mode: ParentMode | None = None
    subchunk_segmentation: SegmentationRule | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"process_rule.mode must be one of {', '.join(MODES)}")
        hierarchical = self.mode == "hierarchical"
        if hierarchical and (self.parent_mode is None or self.subchunk_segmentation is None):
            raise ValueError("hierarchical mode needs parent_mode and subchunk_segmentation")
        if hierarchical and self.parent_mode not in PARENT_MODES:
            raise ValueError(f"parent_mode must be one of {', '.join(PARENT_MODES)}")
        if not hierarchical and (self.parent_mode or self.subchunk_segmentation):
            raise ValueError("parent_mode/subchunk_segmentation only apply to hierarchical mode")

    @classmethod
    def from_dify(cls, body: Mapping[str, Any] | None) -> Self:
        """Parse and validate Dify's ``process_rule``; None/empty means automatic."""
        if not body:
            return cls()
        if not isinstance(body, Mapping):
            raise ValueError("process_rule must be an object")
        mode = body.get("mode")
        if mode not in MODES:
            raise ValueError(f"process_rule.mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "automatic":
            return cls()  # Dify ignores any rules sent with automatic mode.

        rules = body.get("rules")
        if not isinstance(rules, Mapping) or not rules:
            raise ValueError(f"process_rule.rules is required for mode {mode!r}")
        if rules.get("pre_processing_rules") is None:
            raise ValueError("process_rule.rules.pre_processing_rules is required")
        try:
            pre = PreProcessingRules.from_dify(rules["pre_processing_rules"])
        except ValueError as exc:
            raise ValueError(f"process_rule.rules.pre_processing_rules: {exc}") from None

        if mode == "custom":
            seg = SegmentationRule.from_dify(
                rules.get("segmentation"), "process_rule.rules.segmentation"
            )
            return cls(mode="custom", pre_processing=pre, segmentation=seg)

        parent_mode = rules.get("parent_mode")
        if parent_mode not in PARENT_MODES:
            raise ValueError(
                f"process_rule.rules.parent_mode must be one of {', '.join(PARENT_MODES)}, "
                f"got {parent_mode!r}"
            )
        # A full-doc parent is not segmented, so its segmentation may be omitted.
        if parent_mode == "full-doc" and rules.get("segmentation") is None:
            seg = SegmentationRule()
        else:
            seg = SegmentationRule.from_dify(
                rules.get("segmentation"), "process_rule.rules.segmentation"
            )
        child = SegmentationRule.from_dify(
            rules.get("subchunk_segmentation"), "process_rule.rules.subchunk_segmentation"
        )
        return cls(
            mode="hierarchical",
            pre_processing=pre,
            segmentation=seg,
            parent_mode=cast(ParentMode, parent_mode),
            subchunk_segmentation=child,
        )

    def to_dict(self) -> dict[str, Any]:
        rules: dict[str, Any] = {
            "pre_processing_rules": self.pre_processing.to_dify(),
            "segmentation": self.segmentation.to_dify(),
        }
        if self.mode == "hierarchical":
            assert self.subchunk_segmentation is not None  # guaranteed by __post_init__
            rules["parent_mode"] = self.parent_mode
            rules["subchunk_segmentation"] = self.subchunk_segmentation.to_dify()
        return {"mode": self.mode, "rules": rules}
