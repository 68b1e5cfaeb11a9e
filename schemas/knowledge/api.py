"""Request bodies of the knowledge Service API, validated at the edge."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, model_validator

from schemas.base import Body

# --- knowledge (Service API) ------------------------------------------------------------------

IndexingTechnique = Literal["high_quality", "economy"]


class RerankingModelBody(Body):
    reranking_provider_name: str = Field(default="", max_length=255)
    reranking_model_name: str = Field(default="", max_length=255)


class VectorSetting(Body):
    model_config = ConfigDict(extra="allow")
    vector_weight: float | None = Field(default=None, ge=0, le=1)
    embedding_provider_name: str = Field(default="", max_length=255)
    embedding_model_name: str = Field(default="", max_length=255)


class KeywordSetting(Body):
    model_config = ConfigDict(extra="allow")
    keyword_weight: float | None = Field(default=None, ge=0, le=1)


class RetrievalWeights(Body):
    """Dify's `weights` of hybrid search: stored with the dataset and read by every later
    retrieval, so its shape is checked here."""

    model_config = ConfigDict(extra="allow")
    weight_type: str | None = Field(default=None, max_length=255)
    vector_setting: VectorSetting | None = None
    keyword_setting: KeywordSetting | None = None


class RetrievalModelBody(Body):
    model_config = ConfigDict(extra="allow")
    search_method: Literal["keyword_search", "semantic_search", "full_text_search",
                           "hybrid_search"] = "semantic_search"
    reranking_enable: bool = False
    reranking_mode: Literal["reranking_model", "weighted_score"] | None = None
    reranking_model: RerankingModelBody = Field(default_factory=RerankingModelBody)
    top_k: int = Field(default=4, ge=1, le=100)
    score_threshold_enabled: bool = False
    score_threshold: float | None = Field(default=None, ge=0, le=1)
    weights: RetrievalWeights | None = None
    metadata_filtering_conditions: MetadataFilteringConditions | None = None


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


class UpdateDocumentSettings(Body):
    """update-by-file's `data`; checked before the file is stored."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    process_rule: dict[str, Any] | None = None


class UpdateByTextRequest(UpdateDocumentSettings):
    text: str | None = Field(default=None, min_length=1)


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


# --- knowledge tags, metadata, child chunks (Service API) ----------------------------------
# Ids in bodies are plain strings: a malformed id is answered like an unknown one (404, or
# ignored where Dify ignores unknown ids), not as a validation error.


class CreateTagRequest(Body):
    name: str = Field(min_length=1, max_length=50)


class UpdateTagRequest(Body):
    tag_id: str
    name: str = Field(min_length=1, max_length=50)


class DeleteTagRequest(Body):
    tag_id: str


class TagBindingRequest(Body):
    tag_ids: list[str] = Field(min_length=1)
    target_id: str


class TagUnbindingRequest(Body):
    tag_ids: list[str] | None = Field(default=None, min_length=1)
    tag_id: str | None = None  # deprecated single-tag form, folded into tag_ids
    target_id: str

    @model_validator(mode="after")
    def _some_tag(self) -> TagUnbindingRequest:
        if not self.tag_ids and not self.tag_id:
            raise ValueError("tag_ids is required")
        return self

    def all_tag_ids(self) -> list[str]:
        return [*(self.tag_ids or []), *([self.tag_id] if self.tag_id else [])]


MetadataType = Literal["string", "number", "time"]


class CreateMetadataRequest(Body):
    type: MetadataType
    name: str = Field(min_length=1)  # the 255 limit is checked with Dify's message


class UpdateMetadataRequest(Body):
    name: str = Field(min_length=1)


MetadataValueInput = str | int | float | None


class DocumentMetadataInput(Body):
    id: str
    name: str
    value: MetadataValueInput = None


class DocumentMetadataOperationInput(Body):
    document_id: str
    metadata_list: list[DocumentMetadataInput]
    partial_update: bool = False


class UpdateDocumentsMetadataRequest(Body):
    operation_data: list[DocumentMetadataOperationInput] = Field(max_length=1000)


class ChildChunkRequest(Body):
    content: str = Field(min_length=1)


MetadataComparison = Literal[
    "contains", "not contains", "start with", "end with", "is", "is not", "empty",
    "not empty", "in", "not in", "=", "≠", ">", "<", "≥", "≤", "before", "after"]


class MetadataCondition(Body):
    name: str = Field(min_length=1)
    comparison_operator: MetadataComparison
    value: str | int | float | list[str] | None = None


class MetadataFilteringConditions(Body):
    """retrieval_model.metadata_filtering_conditions (Dify's)."""

    logical_operator: Literal["and", "or"] | None = "and"
    conditions: list[MetadataCondition] | None = None
