"""OpenAICompatibleEmbeddings against a fake OpenAI server over real HTTP."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest

from adapters.embeddings.base import EmbeddingError, EmbeddingProvider
from adapters.embeddings.openai_compatible import (
    EmbeddingHTTPError,
    OpenAICompatibleEmbeddings,
)
from adapters.llm.openai_protocol import api_url
from tests.fakes.openai_server import FakeOpenAIServer, bag_of_words_vector

KEY = "sk-test-key"
DIMS = 64


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY, dimensions=DIMS) as fake:
        yield fake


def client(fake: FakeOpenAIServer, **kwargs: object) -> OpenAICompatibleEmbeddings:
    options: dict[str, object] = {"batch_size": 64, "timeout": 5.0, "retry_backoff": 0.01}
    options.update(kwargs)
    return OpenAICompatibleEmbeddings(fake.base_url, str(options.pop("api_key", KEY)),
                                      "fake-embed", DIMS, **options)  # type: ignore[arg-type]


async def test_speaks_the_openai_wire_protocol(fake: FakeOpenAIServer) -> None:
    provider: EmbeddingProvider = client(fake)
    assert provider.model_name == "fake-embed" and provider.dimensions == DIMS
    vectors = await provider.embed_documents(["alpha beta", "gamma"])
    assert len(vectors) == 2 and all(len(v) == DIMS for v in vectors)
    (request,) = fake.embedding_requests
    assert request.method == "POST" and request.path == "/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {"model": "fake-embed", "input": ["alpha beta", "gamma"],
                            "encoding_format": "float"}


async def test_vectors_are_l2_normalised(fake: FakeOpenAIServer) -> None:
    text = "the the the cat"  # the fake answers raw, non-unit word counts
    raw = bag_of_words_vector(text, DIMS)
    assert math.sqrt(sum(x * x for x in raw)) > 1.5
    (vector,) = await client(fake).embed_documents([text])
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-9)
    norm = math.sqrt(sum(x * x for x in raw))
    assert vector == pytest.approx([x / norm for x in raw])


async def test_large_inputs_are_split_into_batches_in_order(fake: FakeOpenAIServer) -> None:
    texts = [f"document number {i} about topic {i % 7}" for i in range(25)]
    vectors = await client(fake, batch_size=10).embed_documents(texts)
    assert [len(r.body["input"]) for r in fake.embedding_requests] == [10, 10, 5]
    assert [t for r in fake.embedding_requests for t in r.body["input"]] == texts
    for text, vector in zip(texts, vectors, strict=True):
        expected = np.array(bag_of_words_vector(text, DIMS))
        assert np.allclose(vector, expected / np.linalg.norm(expected))


async def test_results_are_sorted_by_index(fake: FakeOpenAIServer) -> None:
    fake.reverse_order = True
    texts = ["first text", "second one", "third thing entirely"]
    vectors = await client(fake).embed_documents(texts)
    for text, vector in zip(texts, vectors, strict=True):
        expected = np.array(bag_of_words_vector(text, DIMS))
        assert np.allclose(vector, expected / np.linalg.norm(expected))


async def test_retrieval_with_the_fake_vectors(fake: FakeOpenAIServer) -> None:
    provider = client(fake)
    docs = ["postgres stores the events", "kafka carries the commands",
            "redis caches the sessions"]
    doc_vectors = np.array(await provider.embed_documents(docs))
    query = np.array(await provider.embed_query("which component caches sessions"))
    assert int(np.argmax(doc_vectors @ query)) == 2


async def test_wrong_api_key_is_an_embedding_error_with_status(fake: FakeOpenAIServer) -> None:
    with pytest.raises(EmbeddingHTTPError) as info:
        await client(fake, api_key="sk-wrong").embed_query("hello")
    assert isinstance(info.value, EmbeddingError)
    assert info.value.status_code == 401
    assert "401" in str(info.value) and "Incorrect API key" in str(info.value)
    assert len(fake.embedding_requests) == 1  # 401 is not retried


async def test_retries_after_two_server_errors(fake: FakeOpenAIServer) -> None:
    fake.fail_next(2, status=500)
    vectors = await client(fake, max_retries=2).embed_documents(["retry me"])
    assert len(vectors) == 1
    assert len(fake.embedding_requests) == 3


async def test_retries_rate_limits_honouring_retry_after(fake: FakeOpenAIServer) -> None:
    fake.fail_next(1, status=429, retry_after=0.2)
    started = time.monotonic()
    await client(fake).embed_query("rate limited")
    assert time.monotonic() - started >= 0.2
    assert len(fake.embedding_requests) == 2


async def test_gives_up_after_max_retries(fake: FakeOpenAIServer) -> None:
    fake.fail_next(5, status=503)
    with pytest.raises(EmbeddingHTTPError) as info:
        await client(fake, max_retries=2).embed_query("always failing")
    assert info.value.status_code == 503
    assert "server had an error" in str(info.value)
    assert len(fake.embedding_requests) == 3


async def test_timeout_is_an_embedding_error(fake: FakeOpenAIServer) -> None:
    fake.delay_next(2.0)
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match="timed out"):
        await client(fake, timeout=0.3).embed_query("slow")
    assert time.monotonic() - started < 1.5


async def test_unreachable_server_is_an_embedding_error() -> None:
    provider = OpenAICompatibleEmbeddings("http://127.0.0.1:9", KEY, "m", DIMS,
                                          max_retries=1, retry_backoff=0.01)
    with pytest.raises(EmbeddingError):
        await provider.embed_query("nobody listens on the discard port")


async def test_wrong_dimensions_are_rejected(fake: FakeOpenAIServer) -> None:
    provider = OpenAICompatibleEmbeddings(fake.base_url, KEY, "fake-embed", DIMS * 2,
                                          retry_backoff=0.01)
    with pytest.raises(EmbeddingError, match="dimensions"):
        await provider.embed_query("size mismatch")


async def test_send_dimensions_and_empty_inputs(fake: FakeOpenAIServer) -> None:
    provider = OpenAICompatibleEmbeddings(fake.base_url, KEY, "fake-embed", 16,
                                          send_dimensions=True)
    vectors = await provider.embed_documents(["", "non empty"])
    assert [len(v) for v in vectors] == [16, 16]
    (request,) = fake.embedding_requests
    assert request.body["dimensions"] == 16
    assert request.body["input"] == [" ", "non empty"]  # OpenAI rejects "" inputs
    assert await provider.embed_documents([]) == []
    assert len(fake.embedding_requests) == 1


def test_endpoint_urls_follow_the_sdk_convention() -> None:
    assert api_url("https://api.openai.com/v1", "embeddings") == \
        "https://api.openai.com/v1/embeddings"
    assert api_url("https://api.openai.com/v1/", "embeddings") == \
        "https://api.openai.com/v1/embeddings"
    assert api_url("http://127.0.0.1:8000", "embeddings") == "http://127.0.0.1:8000/v1/embeddings"
    assert api_url("http://h/api/v1/embeddings", "embeddings") == "http://h/api/v1/embeddings"
    assert api_url("http://127.0.0.1:11434/v1", "chat/completions") == \
        "http://127.0.0.1:11434/v1/chat/completions"


def test_count_tokens_is_a_cautious_estimate() -> None:
    provider = OpenAICompatibleEmbeddings("http://x/v1", KEY, "m", DIMS)
    assert provider.count_tokens("") == 0
    assert provider.count_tokens("Hello, world!") == 4
    assert provider.count_tokens("internationalization") == 4
    assert provider.count_tokens("12345678") == 3
    assert provider.count_tokens("数据库") == 3  # no spaces: still counted per character
    prose = "The quick brown fox jumps over the lazy dog near the river bank. " * 10
    words = len(prose.split())
    assert words <= provider.count_tokens(prose) <= 2 * words
