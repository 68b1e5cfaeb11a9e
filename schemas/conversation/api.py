"""Request bodies of the conversation context's HTTP API (Service API and console)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from schemas.base import Body

USER = Field(min_length=1, max_length=255)


class InputFile(Body):
    type: Literal["image", "document", "audio", "video", "custom"]
    transfer_method: Literal["remote_url", "local_file"]
    url: str | None = Field(default=None, max_length=2048)
    upload_file_id: str | None = None


class CompletionMessageRequest(Body):
    inputs: dict[str, Any]
    query: str = Field(default="", max_length=100_000)
    response_mode: Literal["streaming", "blocking"] | None = None
    user: str = USER
    files: list[InputFile] | None = None


class ChatMessageRequest(CompletionMessageRequest):
    query: str = Field(min_length=1, max_length=100_000)
    conversation_id: str | None = None
    auto_generate_name: bool = True


class StopRequest(Body):
    user: str = USER


class FeedbackRequest(Body):
    rating: Literal["like", "dislike"] | None = None
    user: str = USER
    content: str | None = Field(default=None, max_length=10_000)


class RenameConversationRequest(Body):
    name: str | None = Field(default=None, max_length=255)
    auto_generate: bool = False
    user: str = USER


class TextToAudioRequest(Body):
    message_id: str | None = None
    text: str | None = Field(default=None, max_length=10_000)
    user: str = USER
    voice: str | None = Field(default=None, max_length=64)
    streaming: bool = False


class UserRequest(Body):
    user: str = USER


class AnnotationRequest(Body):
    question: str = Field(min_length=1, max_length=100_000)
    answer: str = Field(min_length=1, max_length=100_000)


class AnnotationReplyRequest(Body):
    """Required for both actions, as Dify validates the body before the action."""

    score_threshold: float = Field(ge=0, le=1)
    embedding_provider_name: str = Field(min_length=1, max_length=255)
    embedding_model_name: str = Field(min_length=1, max_length=255)
