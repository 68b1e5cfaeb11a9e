"""Work topics of the conversation context (what Dify's request threads and its
`conversation` queue did)."""

from __future__ import annotations

# MessageCreated: the chat processor answers it (a consumer group; scale it with members).
CHAT = "conversation.chat"
# AppDeleted (platform): the app's conversations, messages and files go with it.
CLEANUP = "conversation.cleanup"
# An app's annotation events (one app's in order): annotation reply jobs and the reply index.
ANNOTATIONS = "conversation.annotations"
