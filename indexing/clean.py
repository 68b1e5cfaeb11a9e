"""Text cleaning before segmentation, following Dify's CleanProcessor semantics."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

# Ids Dify accepts in ``process_rule.rules.pre_processing_rules``.
PRE_PROCESSING_RULE_IDS: tuple[str, ...] = ("remove_extra_spaces", "remove_urls_emails")


@dataclass(frozen=True, slots=True)
class PreProcessingRules:
    remove_extra_spaces: bool = False
    remove_urls_emails: bool = False

    @classmethod
    def from_dify(cls, rules: Iterable[Mapping[str, Any]] | None) -> Self:
        """Parse Dify's ``[{"id": ..., "enabled": bool}, ...]``; absent ids mean disabled.

        Like Dify, a repeated id keeps its last value; unknown ids or non-bool ``enabled``
        raise ValueError so a typo is not silently ignored.
        """
        if rules is None:
            return cls()
        if isinstance(rules, str | bytes | Mapping):
            raise ValueError("pre_processing_rules must be a list of {id, enabled} objects")
        values: dict[str, bool] = {}
        for rule in rules:
            if not isinstance(rule, Mapping):
                raise ValueError("each pre_processing_rule must be an object with id and enabled")
            rule_id = rule.get("id")
            if not rule_id:
                raise ValueError("pre_processing_rule id is required")
            if rule_id not in PRE_PROCESSING_RULE_IDS:
                raise ValueError(
                    f"unknown pre_processing_rule id {rule_id!r}; "
                    f"expected one of {', '.join(PRE_PROCESSING_RULE_IDS)}"
                )
            enabled = rule.get("enabled")
            if not isinstance(enabled, bool):
                raise ValueError(f"pre_processing_rule {rule_id!r}: enabled must be a boolean")
            values[rule_id] = enabled
        return cls(**values)

    def to_dify(self) -> list[dict[str, Any]]:
        return [
            {"id": "remove_extra_spaces", "enabled": self.remove_extra_spaces},
            {"id": "remove_urls_emails", "enabled": self.remove_urls_emails},
        ]


# Control characters except \t and \n (\r is normalised to \n first), plus the
# non-character U+FFFE that Dify also strips.
_INVALID_CHARS_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe]")
_EXTRA_NEWLINES_RE = re.compile(r"\n{3,}")
# Same whitespace class as Dify: runs of 2+ horizontal spaces (incl. NBSP, ideographic
# space) collapse to one plain space; a single tab is left alone.
_EXTRA_SPACES_RE = re.compile(r"[\t\f\r\x20\u00a0\u1680\u180e\u2000-\u200a\u202f\u205f\u3000]{2,}")
_EMAIL_RE = re.compile(r"[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+")
_MD_IMAGE_RE = re.compile(r"!\[(.*?)\]\((https?://[^\s)]+)\)")
_URL_RE = re.compile(r"https?://[^\s)]+")
_PLACEHOLDER = "\x00MDIMG{}\x00"  # NUL never survives invalid-char removal, so no clash


def clean_text(text: str, rules: PreProcessingRules) -> str:
    """Clean ``text`` the way Dify's CleanProcessor does before chunking."""
    # Always: neutralise special-token look-alikes (``<|endoftext|>``) that could confuse
    # the embedding/LLM model, and drop control characters.
    text = text.replace("<|", "<").replace("|>", ">")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVALID_CHARS_RE.sub("", text)

    # URLs first so that the gaps they leave get collapsed by remove_extra_spaces.
    if rules.remove_urls_emails:
        # Dify keeps markdown image URLs (the image would be lost otherwise): park them
        # behind placeholders, remove emails and bare URLs, then restore them.
        images: list[str] = []

        def _park(match: re.Match[str]) -> str:
            images.append(match.group(0))
            return _PLACEHOLDER.format(len(images) - 1)

        text = _MD_IMAGE_RE.sub(_park, text)
        text = _EMAIL_RE.sub("", text)
        text = _URL_RE.sub("", text)
        for i, image in enumerate(images):
            text = text.replace(_PLACEHOLDER.format(i), image)

    if rules.remove_extra_spaces:
        text = _EXTRA_NEWLINES_RE.sub("\n\n", text)
        text = _EXTRA_SPACES_RE.sub(" ", text)
    return text
