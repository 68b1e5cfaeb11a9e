"""Dify process rules the indexing tests write documents with."""

from __future__ import annotations

from typing import Any

# One segment per paragraph (custom mode does not merge pieces).
PARAGRAPH_RULE: dict[str, Any] = {"mode": "custom", "rules": {
    "pre_processing_rules": [{"id": "remove_extra_spaces", "enabled": True}],
    "segmentation": {"separator": "\\n\\n", "max_tokens": 60, "chunk_overlap": 0}}}
# Parents are paragraphs, children their sentences.
HIERARCHICAL_RULE: dict[str, Any] = {"mode": "hierarchical", "rules": {
    "pre_processing_rules": [{"id": "remove_extra_spaces", "enabled": True}],
    "segmentation": {"separator": "\\n\\n", "max_tokens": 500},
    "parent_mode": "paragraph",
    "subchunk_segmentation": {"separator": ". ", "max_tokens": 60}}}
