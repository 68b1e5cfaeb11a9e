"""The embedding models a deployment offers (adapters/embeddings/models.py) and the
multilingual local model (adapters/embeddings/local_use.py)."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.embeddings.local_minilm import LocalMiniLM
from adapters.embeddings.local_use import LocalUSE
from adapters.embeddings.models import LOCAL_PROVIDER, EmbeddingModels, UnknownEmbeddingModel
from bootstrap import build_embedding_models
from config import Settings

USE = LocalUSE.MODEL_NAME
MINILM = LocalMiniLM.MODEL_NAME


def test_a_dataset_names_a_model_or_gets_the_default() -> None:
    models = build_embedding_models(Settings(EMBEDDING_LOCAL_MODEL=USE))
    assert models.key(None, None) == (LOCAL_PROVIDER, USE)  # the configured default
    assert models.key(None, MINILM) == (LOCAL_PROVIDER, MINILM)  # the one provider of it
    assert models.key(LOCAL_PROVIDER, None) == (LOCAL_PROVIDER, USE)
    for provider, model in [("openai", USE), (None, "text-embedding-3-large"),
                            ("openai_compatible", None)]:
        with pytest.raises(UnknownEmbeddingModel, match=r"not available|required"):
            models.key(provider, model)
    # each model is built once and shared
    assert models.get(None, None).embeddings is models.get(LOCAL_PROVIDER, USE).embeddings
    assert models.get(None, MINILM).embeddings.dimensions == 384


def test_the_configured_api_model_becomes_the_default_beside_the_local_ones() -> None:
    models = build_embedding_models(Settings(
        EMBEDDING_PROVIDER="openai_compatible", EMBEDDING_API_BASE="http://127.0.0.1:9",
        EMBEDDING_MODEL="bge-m3", EMBEDDING_DIMENSIONS=1024))
    assert models.key(None, None) == ("openai_compatible", "bge-m3")
    assert models.get(None, None).embeddings.dimensions == 1024
    assert models.key(LOCAL_PROVIDER, USE) == (LOCAL_PROVIDER, USE)  # still offered
    with pytest.raises(ValueError):
        EmbeddingModels({}, (LOCAL_PROVIDER, MINILM))


@pytest.fixture(scope="module")
def use() -> LocalUSE:
    return LocalUSE(threads=1)


async def test_multilingual_vectors_meet_across_languages(use: LocalUSE) -> None:
    texts = ["知识库支持向量检索", "The knowledge base supports vector search",
             "今天天气很好，适合散步"]  # noqa: RUF001 - a Chinese comma
    vectors = np.array(await use.embed_documents(texts))
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]  # translation near, other topic far
    assert np.allclose(await use.embed_query(texts[0]), vectors[0], atol=1e-6)
    assert await use.embed_documents([]) == []
    with pytest.raises(TypeError):
        await use.embed_documents("not a list")  # type: ignore[arg-type]


def test_tokens_are_the_models_own(use: LocalUSE) -> None:
    assert use.count_tokens("") == use.count_tokens("  ") == 0
    text = "从维也纳开往威尼斯的夜间列车晚上九点四十分出发。"
    assert 0 < use.count_tokens(text) != LocalMiniLM().count_tokens(text)
    # joined texts never count more than their parts (the splitter relies on it)
    assert use.count_tokens(text) < use.count_tokens(text + text) <= 2 * use.count_tokens(text)
