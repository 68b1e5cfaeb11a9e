"""Request bodies of the HTTP API (console and Service API), validated at the edge."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from schemas.commands import AppMode


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class SetupRequest(Body):
    email: EmailStr
    name: str = Field(min_length=1, max_length=30)
    password: str = Field(min_length=8, max_length=256)
    language: str = "en-US"

    @field_validator("password")
    @classmethod
    def _strong_enough(cls, value: str) -> str:
        # Dify's rule: letters and digits, at least 8 characters.
        if not (any(c.isalpha() for c in value) and any(c.isdigit() for c in value)):
            raise ValueError("Password must contain letters and numbers")
        return value


class LoginRequest(Body):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)
    remember_me: bool = False


class RefreshTokenRequest(Body):
    refresh_token: str = Field(min_length=1)


class CreateAppRequest(Body):
    name: str = Field(min_length=1, max_length=255)
    mode: AppMode
    description: str = Field(default="", max_length=400)
    icon_type: str = Field(default="emoji", pattern="^(emoji|image|link)$")
    icon: str = Field(default="🤖", max_length=255)
    icon_background: str = Field(default="#FFEAD5", max_length=32)


class UpdateAppRequest(Body):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=400)
    icon_type: str | None = Field(default=None, pattern="^(emoji|image|link)$")
    icon: str | None = Field(default=None, max_length=255)
    icon_background: str | None = Field(default=None, max_length=32)


# --- knowledge (Service API) ------------------------------------------------------------------

IndexingTechnique = Literal["high_quality", "economy"]


class RetrievalModelBody(Body):
    model_config = ConfigDict(extra="allow")
    search_method: Literal["keyword_search", "semantic_search", "full_text_search",
                           "hybrid_search"] = "semantic_search"
    reranking_enable: bool = False
    top_k: int = Field(default=4, ge=1, le=100)
    score_threshold_enabled: bool = False
    score_threshold: float | None = Field(default=None, ge=0, le=1)
    weights: dict[str, Any] | None = None


class CreateDatasetRequest(Body):
    name: str = Field(min_length=1, max_length=40)
    description: str = Field(default="", max_length=400)
    indexing_technique: IndexingTechnique | None = None
    permission: Literal["only_me", "all_team_members", "partial_members"] = "only_me"
    provider: Literal["vendor", "external"] = "vendor"
    embedding_model: str | None = None
    embedding_model_provider: str | None = None
    retrieval_model: RetrievalModelBody | None = None


class UpdateDatasetRequest(Body):
    name: str | None = Field(default=None, min_length=1, max_length=40)
    description: str | None = Field(default=None, max_length=400)
    indexing_technique: IndexingTechnique | None = None
    permission: Literal["only_me", "all_team_members", "partial_members"] | None = None
    embedding_model: str | None = None
    embedding_model_provider: str | None = None
    retrieval_model: RetrievalModelBody | None = None


class DocumentSettings(Body):
    indexing_technique: IndexingTechnique | None = None
    doc_form: Literal["text_model", "hierarchical_model", "qa_model"] = "text_model"
    doc_language: str = "English"
    process_rule: dict[str, Any] | None = None
    retrieval_model: RetrievalModelBody | None = None
    embedding_model: str | None = None
    embedding_model_provider: str | None = None


class CreateByTextRequest(DocumentSettings):
    name: str = Field(min_length=1, max_length=255)
    text: str = Field(min_length=1)


class UpdateByTextRequest(Body):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    text: str | None = Field(default=None, min_length=1)
    process_rule: dict[str, Any] | None = None


class DocumentIdsRequest(Body):
    document_ids: list[UUID] = Field(min_length=1, max_length=100)


class SegmentInput(Body):
    content: str = Field(min_length=1)
    answer: str = ""
    keywords: list[str] = []


class CreateSegmentsRequest(Body):
    segments: list[SegmentInput] = Field(min_length=1, max_length=100)


class SegmentUpdateInput(Body):
    content: str | None = Field(default=None, min_length=1)
    answer: str | None = None
    keywords: list[str] | None = None
    enabled: bool | None = None
    regenerate_child_chunks: bool = False


class UpdateSegmentRequest(Body):
    segment: SegmentUpdateInput


class RetrieveRequest(Body):
    query: str = Field(min_length=1, max_length=250)
    retrieval_model: RetrievalModelBody | None = None
