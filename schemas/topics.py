"""Topic names. Which topics exist comes from the contexts' manifests (`contexts/`): one
event topic per bounded context, plus the work topics a context routes events to."""

from __future__ import annotations

COMMANDS = "commands"
DEAD_LETTER_SUFFIX = ".dlq"


def event_topic(context: str) -> str:
    return f"events.{context}"


def dead_letter_topic(topic: str) -> str:
    return topic + DEAD_LETTER_SUFFIX
