"""The model providers a workspace can connect, as Dify describes them (names, model types,
credential forms), and the rules both sides agree on: provider names, which credential
fields are secret, how secrets are shown masked.

Both speak the OpenAI HTTP protocol: `openai` (predefined models, one key for the
provider) and `openai_api_compatible` (customizable models: each model has its own endpoint
and key — vLLM, Ollama, LiteLLM, LocalAI, and rerank servers speaking Cohere/Jina's
`/rerank`). Dify's plugin-style names (`langgenius/openai/openai`) are the canonical form;
the bare names are accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ModelType = Literal["llm", "text-embedding", "rerank", "tts", "speech2text"]
MODEL_TYPES: tuple[str, ...] = ("llm", "text-embedding", "rerank", "tts", "speech2text")

HIDDEN_VALUE = "[__HIDDEN__]"  # what Dify's console sends back for an unchanged secret
# Not a form field: a custom text-embedding model's vector size, measured when it is saved
# (an index must know it before the first vector), kept with its credentials.
DIMENSIONS = "dimensions"


@dataclass(frozen=True)
class CredentialField:
    variable: str
    label: str
    type: str  # Dify's form types: secret-input, text-input, select
    required: bool = False
    default: str | None = None
    options: tuple[str, ...] = ()

    @property
    def secret(self) -> bool:
        return self.type == "secret-input"

    def form(self) -> dict[str, Any]:
        """The field as Dify's provider schema lists it."""
        return {
            "variable": self.variable, "label": {"en_US": self.label, "zh_Hans": self.label},
            "type": self.type, "required": self.required, "default": self.default,
            "options": [{"value": o, "label": {"en_US": o, "zh_Hans": o}}
                        for o in self.options],
            "placeholder": None, "max_length": 0, "show_on": [],
        }


@dataclass(frozen=True)
class PredefinedModel:
    model: str
    model_type: str
    context_size: int | None = None
    mode: str | None = None  # llm: chat | completion
    features: tuple[str, ...] = ()
    dimensions: int | None = None  # text-embedding: the vectors' size


@dataclass(frozen=True)
class ProviderSpec:
    name: str  # canonical, plugin-style
    short_name: str
    label: str
    model_types: tuple[str, ...]
    configurate_methods: tuple[str, ...]  # predefined-model | customizable-model
    provider_fields: tuple[CredentialField, ...] = ()
    model_fields: tuple[CredentialField, ...] = ()
    models: tuple[PredefinedModel, ...] = ()

    @property
    def customizable(self) -> bool:
        return "customizable-model" in self.configurate_methods

    def predefined(self, model: str, model_type: str) -> PredefinedModel | None:
        return next((m for m in self.models
                     if m.model == model and m.model_type == model_type), None)


OPENAI = ProviderSpec(
    name="langgenius/openai/openai", short_name="openai", label="OpenAI",
    model_types=("llm", "text-embedding", "tts", "speech2text"),
    configurate_methods=("predefined-model",),
    provider_fields=(
        CredentialField("openai_api_key", "API Key", "secret-input", required=True),
        CredentialField("openai_organization", "Organization", "text-input"),
        CredentialField("openai_api_base", "API Base", "text-input"),
    ),
    models=(
        PredefinedModel("gpt-4o", "llm", 128000, "chat", ("vision", "tool-call",
                                                           "stream-tool-call")),
        PredefinedModel("gpt-4o-mini", "llm", 128000, "chat", ("vision", "tool-call",
                                                                "stream-tool-call")),
        PredefinedModel("gpt-4.1", "llm", 1047576, "chat", ("vision", "tool-call",
                                                             "stream-tool-call")),
        PredefinedModel("gpt-4.1-mini", "llm", 1047576, "chat", ("vision", "tool-call",
                                                                  "stream-tool-call")),
        PredefinedModel("gpt-3.5-turbo", "llm", 16385, "chat", ("tool-call",)),
        PredefinedModel("text-embedding-3-small", "text-embedding", 8191, dimensions=1536),
        PredefinedModel("text-embedding-3-large", "text-embedding", 8191, dimensions=3072),
        PredefinedModel("text-embedding-ada-002", "text-embedding", 8097, dimensions=1536),
        PredefinedModel("tts-1", "tts"),
        PredefinedModel("tts-1-hd", "tts"),
        PredefinedModel("whisper-1", "speech2text"),
    ),
)

OPENAI_API_COMPATIBLE = ProviderSpec(
    name="langgenius/openai_api_compatible/openai_api_compatible",
    short_name="openai_api_compatible", label="OpenAI-API-compatible",
    model_types=("llm", "text-embedding", "rerank", "tts", "speech2text"),
    configurate_methods=("customizable-model",),
    model_fields=(
        CredentialField("api_key", "API Key", "secret-input"),
        CredentialField("endpoint_url", "API endpoint URL", "text-input", required=True),
        CredentialField("mode", "Completion mode", "select", default="chat",
                        options=("chat", "completion")),
        CredentialField("context_size", "Model context size", "text-input", default="4096"),
        CredentialField("max_tokens_to_sample", "Upper bound for max tokens", "text-input",
                        default="4096"),
        # Dify's: what the served model can do (tool calls, JSON-schema answers)
        CredentialField("function_calling_type", "Function calling", "select",
                        default="no_call", options=("function_call", "tool_call", "no_call")),
        CredentialField("structured_output_support", "Structured output", "select",
                        default="unsupported", options=("supported", "unsupported")),
    ),
)

PROVIDERS: tuple[ProviderSpec, ...] = (OPENAI, OPENAI_API_COMPATIBLE)
_BY_NAME = {n: p for p in PROVIDERS for n in (p.name, p.short_name)}


def provider_spec(name: str) -> ProviderSpec | None:
    """The provider a name means, in either form (`openai` or `langgenius/openai/openai`)."""
    return _BY_NAME.get(name.strip())


def mask_secret(value: str) -> str:
    """Dify's obfuscation: the first six and last two characters ("sk-abc************yz")."""
    if len(value) <= 8:
        return "*" * len(value)
    return value[:6] + "*" * 12 + value[-2:]


def masked(credentials: dict[str, Any], fields: tuple[CredentialField, ...]) -> dict[str, Any]:
    """The credentials as anyone may see them: secret fields masked, the others as they are."""
    secret = {f.variable for f in fields if f.secret}
    return {k: mask_secret(str(v)) if k in secret and v else v for k, v in credentials.items()}


def credentials_purpose(tenant_id: object) -> str:
    """The sealing purpose of a workspace's provider credentials: a key per workspace."""
    return f"provider credentials {tenant_id}"
