"""An app's configuration in Dify's shapes: the model config (`POST
/console/api/apps/{id}/model-config`) and the web site settings. Validated at the edge,
stored normalised (every field present) in events, read back by the gateway and workers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from schemas.base import Body

VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
FORM_CONTROLS = ("text-input", "paragraph", "select", "number")
DEFAULT_MAX_LENGTH = 48  # Dify's text-input default
SITE_FIELDS = ("title", "icon_type", "icon", "icon_background", "description",
               "default_language", "chat_color_theme", "chat_color_theme_inverted",
               "customize_domain", "copyright", "privacy_policy", "custom_disclaimer",
               "customize_token_strategy", "prompt_public", "show_workflow_steps",
               "use_icon_as_answer_icon", "input_placeholder")


class Enabled(Body):
    enabled: bool = False


class EnabledByDefault(Body):
    enabled: bool = True


class ModelSettings(Body):
    provider: str = Field(min_length=1, max_length=255)
    name: str = Field(min_length=1, max_length=255)
    mode: Literal["chat", "completion"] = "chat"
    completion_params: dict[str, Any] = Field(default_factory=dict)


# Keys of the model request Eddy sets itself; as completion params they would replace them.
RESERVED_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "tools",
                             "include_usage"})


class CompletionParams(Body):
    """`model.completion_params`, checked when a config is saved: the chat processor sends
    them with every answer of the app, so a malformed one would fail each later message.
    (Configs already stored are read without this check.)"""

    model_config = ConfigDict(extra="allow")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    stop: list[str] | None = Field(default=None, max_length=4)

    @model_validator(mode="after")
    def _no_reserved_keys(self) -> CompletionParams:
        reserved = sorted(RESERVED_PARAMS & (self.model_extra or {}).keys())
        if reserved:
            raise ValueError(f"completion_params may not set {', '.join(reserved)}")
        return self


class FormControl(Body):
    label: str = Field(default="", max_length=255)
    variable: str = Field(pattern=VARIABLE_PATTERN)
    required: bool = False
    default: str | None = None
    max_length: int | None = Field(default=None, ge=1, le=100_000)
    options: list[str] = Field(default_factory=list)


class TextToSpeech(Body):
    enabled: bool = False
    voice: str = ""
    language: str = ""
    autoPlay: str = Field(default="disabled", pattern="^(enabled|disabled)$")


class SensitiveWordReply(Body):
    enabled: bool = False
    preset_response: str = Field(default="", max_length=100)


class SensitiveWordConfig(Body):
    keywords: str = Field(default="", max_length=10_000)  # one keyword per line, as Dify
    inputs_config: SensitiveWordReply = Field(default_factory=SensitiveWordReply)
    outputs_config: SensitiveWordReply = Field(default_factory=SensitiveWordReply)


class SensitiveWordAvoidance(Body):
    enabled: bool = False
    type: Literal["keywords"] = "keywords"
    config: SensitiveWordConfig = Field(default_factory=SensitiveWordConfig)

    def keywords(self) -> list[str]:
        return [k.strip() for k in self.config.keywords.splitlines() if k.strip()]


class DatasetRef(Body):
    enabled: bool = True
    id: str


class DatasetEntry(Body):
    dataset: DatasetRef


class DatasetList(Body):
    datasets: list[DatasetEntry] = Field(default_factory=list, max_length=50)


class DatasetConfigs(Body):
    retrieval_model: Literal["single", "multiple"] = "multiple"
    top_k: int = Field(default=4, ge=1, le=20)
    score_threshold: float | None = Field(default=None, ge=0, le=1)
    score_threshold_enabled: bool = False
    reranking_enable: bool = False
    datasets: DatasetList = Field(default_factory=DatasetList)

    def dataset_ids(self) -> list[str]:
        return [d.dataset.id for d in self.datasets.datasets if d.dataset.enabled]


class ImageUpload(Body):
    enabled: bool = False
    number_limits: int = Field(default=3, ge=1, le=10)
    detail: Literal["high", "low"] = "high"
    transfer_methods: list[Literal["remote_url", "local_file"]] = Field(
        default_factory=lambda: ["remote_url", "local_file"])


class FileUpload(Body):
    image: ImageUpload = Field(default_factory=ImageUpload)


class AppModelConfig(Body):
    """Dify's ModelConfig. `model` is None only for an app whose workspace had no default
    model when it was configured."""

    model: ModelSettings | None = None
    pre_prompt: str = Field(default="", max_length=100_000)
    prompt_type: Literal["simple"] = "simple"
    opening_statement: str = Field(default="", max_length=10_000)
    suggested_questions: list[str] = Field(default_factory=list, max_length=20)
    suggested_questions_after_answer: Enabled = Field(default_factory=Enabled)
    speech_to_text: Enabled = Field(default_factory=Enabled)
    text_to_speech: TextToSpeech = Field(default_factory=TextToSpeech)
    retriever_resource: EnabledByDefault = Field(default_factory=EnabledByDefault)
    more_like_this: Enabled = Field(default_factory=Enabled)
    sensitive_word_avoidance: SensitiveWordAvoidance = Field(
        default_factory=SensitiveWordAvoidance)
    user_input_form: list[dict[str, FormControl]] = Field(default_factory=list, max_length=50)
    dataset_query_variable: str = ""
    dataset_configs: DatasetConfigs = Field(default_factory=DatasetConfigs)
    file_upload: FileUpload = Field(default_factory=FileUpload)

    @field_validator("user_input_form")
    @classmethod
    def _one_control_each(cls, form: list[dict[str, FormControl]]) -> list[dict[str, FormControl]]:
        seen: set[str] = set()
        for item in form:
            if len(item) != 1 or next(iter(item)) not in FORM_CONTROLS:
                raise ValueError("each user_input_form item must be one of "
                                 f"{', '.join(FORM_CONTROLS)}")
            kind, control = next(iter(item.items()))
            if control.variable in seen:
                raise ValueError(f"variable {control.variable!r} appears twice")
            seen.add(control.variable)
            if kind == "select" and not control.options:
                raise ValueError(f"select {control.variable!r} needs options")
        return form

    @model_validator(mode="after")
    def _query_variable_is_an_input(self) -> AppModelConfig:
        names = {next(iter(i.values())).variable for i in self.user_input_form}
        if self.dataset_query_variable and self.dataset_query_variable not in names:
            raise ValueError("dataset_query_variable must name a user_input_form variable")
        return self

    def form_controls(self) -> list[tuple[str, FormControl]]:
        return [next(iter(item.items())) for item in self.user_input_form]


class SiteSettings(Body):
    """POST /console/api/apps/{id}/site: only the fields sent change."""

    title: str | None = Field(default=None, min_length=1, max_length=255)
    icon_type: str | None = Field(default=None, pattern="^(emoji|image|link)$")
    icon: str | None = Field(default=None, max_length=255)
    icon_background: str | None = Field(default=None, max_length=32)
    description: str | None = Field(default=None, max_length=1000)
    default_language: str | None = Field(default=None, max_length=32)
    chat_color_theme: str | None = Field(default=None, max_length=32)
    chat_color_theme_inverted: bool | None = None
    customize_domain: str | None = Field(default=None, max_length=255)
    copyright: str | None = Field(default=None, max_length=255)
    privacy_policy: str | None = Field(default=None, max_length=255)
    custom_disclaimer: str | None = Field(default=None, max_length=512)
    customize_token_strategy: Literal["must", "allow", "not_allow"] | None = None
    prompt_public: bool | None = None
    show_workflow_steps: bool | None = None
    use_icon_as_answer_icon: bool | None = None
    input_placeholder: str | None = Field(default=None, max_length=255)
