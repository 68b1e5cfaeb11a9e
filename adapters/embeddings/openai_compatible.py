"""Embeddings from any server speaking OpenAI's `POST /v1/embeddings` wire protocol.

That covers OpenAI itself and the many compatible servers (vLLM, Ollama, LiteLLM, TEI, ...).
Request:  {"model": ..., "input": [texts], "encoding_format": "float"}
Response: {"data": [{"index": i, "embedding": [...]}, ...], "usage": {...}}
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from adapters.embeddings.base import EmbeddingError
from adapters.llm.openai_protocol import OpenAIProtocolClient, ProviderError

# count_tokens: see the method. Letter runs, digit runs, and every other visible character.
_TOKEN_PIECES = re.compile(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]")


class EmbeddingHTTPError(EmbeddingError):
    """The server answered with an error status (after any retries)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"embeddings request failed: HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


class OpenAICompatibleEmbeddings:
    """EmbeddingProvider backed by an OpenAI-compatible HTTP embeddings endpoint.

    `dimensions` is the vector size the model returns; answers of another size are rejected
    (they would corrupt a vector index). Set `send_dimensions=True` to also ask the server
    for that size (OpenAI's text-embedding-3-* can shorten vectors; many servers reject the
    field, hence off by default). Inputs go out in requests of at most `batch_size` texts.
    """

    def __init__(self, base_url: str, api_key: str, model: str, dimensions: int,
                 batch_size: int = 64, timeout: float | None = None, *,
                 max_retries: int | None = None, retry_backoff: float = 0.5,
                 send_dimensions: bool = False) -> None:
        """Limits not given (timeout: each read; retries) are the process's
        (adapters/outside.py), as is each request's deadline."""
        if dimensions < 1 or batch_size < 1:
            raise ValueError("dimensions and batch_size must be >= 1")
        self._client = OpenAIProtocolClient(base_url, api_key, timeout=timeout,
                                            max_retries=max_retries,
                                            retry_backoff=retry_backoff)
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._send_dimensions = send_dimensions

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def count_tokens(self, text: str) -> int:
        """An estimate: the real tokenizer depends on the remote model and is not available.

        Letter runs count one token per started 6 letters, digit runs one per 3 digits (BPE
        tokenizers split numbers in groups of up to 3), and every other non-space character
        (punctuation, CJK, emoji) one token. For English prose this lands near the usual
        ~1.3 tokens per word, slightly above real BPE counts, which is the safe side for
        sizing chunks; unlike a word count it does not collapse on text without spaces.
        """
        total = 0
        for piece in _TOKEN_PIECES.findall(text):
            if piece[0].isascii() and piece[0].isalpha():
                total += 1 + (len(piece) - 1) // 6
            elif piece[0].isdigit():
                total += 1 + (len(piece) - 1) // 3
            else:
                total += 1
        return total

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a sequence of strings, not a string")
        vectors: list[list[float]] = []
        # Sequential requests: simplest way to stay inside a provider's rate limits.
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(await self._embed_batch(list(texts[start:start + self._batch_size])))
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_documents([text]))[0]

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        try:
            answer = await self._client.embeddings(
                self._model, texts, dimensions=self._dimensions if self._send_dimensions else None)
        except ProviderError as exc:
            if exc.status_code is not None:
                raise EmbeddingHTTPError(exc.status_code, exc.message) from exc
            raise EmbeddingError(f"embeddings request failed: {exc.message}") from exc
        for vector in answer.vectors:
            if len(vector) != self._dimensions:
                raise EmbeddingError(
                    f"model {self._model} returned {len(vector)} dimensions, "
                    f"expected {self._dimensions}"
                )
        return [_normalise(v) for v in answer.vectors]


def _normalise(vector: list[float]) -> list[float]:
    # Most providers already return unit vectors, but not all; the protocol promises them.
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise EmbeddingError("embedding has zero or non-finite norm")
    return [x / norm for x in vector]
