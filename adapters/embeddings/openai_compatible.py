"""Embeddings from any server speaking OpenAI's `POST /v1/embeddings` wire protocol.

That covers OpenAI itself and the many compatible servers (vLLM, Ollama, LiteLLM, TEI, ...).
Request:  {"model": ..., "input": [texts], "encoding_format": "float"}
Response: {"data": [{"index": i, "embedding": [...]}, ...], "usage": {...}}
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from adapters.embeddings.base import EmbeddingError

# Statuses worth another try: rate limiting and server-side trouble.
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 20.0  # never sleep longer than this on a server's Retry-After

# count_tokens: see the method. Letter runs, digit runs, and every other visible character.
_TOKEN_PIECES = re.compile(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]")


class EmbeddingHTTPError(EmbeddingError):
    """The server answered with an error status (after any retries)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"embeddings request failed: HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


def embeddings_url(base_url: str) -> str:
    """Where to POST, following the OpenAI SDK's convention for `base_url`.

    "https://api.openai.com/v1" (the SDK's form) -> ".../v1/embeddings"; a bare host such as
    "http://127.0.0.1:8000" -> ".../v1/embeddings"; a full ".../embeddings" URL is kept.
    """
    url = base_url.rstrip("/")
    if url.endswith("/embeddings"):
        return url
    if urlsplit(url).path in ("", "/"):
        return url + "/v1/embeddings"
    return url + "/embeddings"


class OpenAICompatibleEmbeddings:
    """EmbeddingProvider backed by an OpenAI-compatible HTTP embeddings endpoint.

    `dimensions` is the vector size the model returns; answers of another size are rejected
    (they would corrupt a vector index). Set `send_dimensions=True` to also ask the server
    for that size (OpenAI's text-embedding-3-* can shorten vectors; many servers reject the
    field, hence off by default). Inputs go out in requests of at most `batch_size` texts.
    """

    def __init__(self, base_url: str, api_key: str, model: str, dimensions: int,
                 batch_size: int = 64, timeout: float = 30, *, max_retries: int = 2,
                 retry_backoff: float = 0.5, send_dimensions: bool = False) -> None:
        if dimensions < 1 or batch_size < 1 or max_retries < 0:
            raise ValueError("dimensions and batch_size must be >= 1, max_retries >= 0")
        self._url = embeddings_url(base_url)
        self._api_key = api_key
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._timeout = timeout
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        self._send_dimensions = send_dimensions
        # Created on first use, inside the running loop: an httpx pool belongs to one loop.
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

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
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._client_loop = None

    # -- internals ------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # A client made on another (likely closed) loop cannot be reused or closed here.
            self._client = httpx.AsyncClient(timeout=self._timeout)
            self._client_loop = loop
        return self._client

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        # OpenAI rejects empty strings in `input`; a space embeds as "no content" instead.
        payload: dict[str, Any] = {
            "model": self._model,
            "input": [t if t.strip() else " " for t in texts],
            "encoding_format": "float",
        }
        if self._send_dimensions:
            payload["dimensions"] = self._dimensions
        body = await self._post(payload)
        return self._parse(body, len(texts))

    async def _post(self, payload: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        attempt = 0
        while True:
            try:
                response = await self._http().post(self._url, json=payload, headers=headers)
            except httpx.TimeoutException as exc:
                # Not retried: a retry would multiply an already long wait.
                raise EmbeddingError(
                    f"embeddings request to {self._url} timed out after {self._timeout}s"
                ) from exc
            except httpx.TransportError as exc:
                if attempt < self._max_retries:  # connection refused/reset: often transient
                    await asyncio.sleep(self._backoff(attempt, None))
                    attempt += 1
                    continue
                raise EmbeddingError(f"embeddings request to {self._url} failed: {exc!r}") from exc
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError as exc:
                    raise EmbeddingError("embeddings response is not JSON") from exc
            if response.status_code in _RETRY_STATUSES and attempt < self._max_retries:
                await asyncio.sleep(self._backoff(attempt, response.headers.get("retry-after")))
                attempt += 1
                continue
            raise EmbeddingHTTPError(response.status_code, _error_message(response))

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), _MAX_RETRY_AFTER)
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        return float(self._retry_backoff * (2 ** attempt))

    def _parse(self, body: Any, expected: int) -> list[list[float]]:
        try:
            items = sorted(body["data"], key=lambda item: int(item["index"]))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"malformed embeddings response: {exc!r}") from exc
        if len(vectors) != expected:
            raise EmbeddingError(f"asked for {expected} embeddings, got {len(vectors)}")
        for vector in vectors:
            if len(vector) != self._dimensions:
                raise EmbeddingError(
                    f"model {self._model} returned {len(vector)} dimensions, "
                    f"expected {self._dimensions}"
                )
        return [_normalise(v) for v in vectors]


def _normalise(vector: list[float]) -> list[float]:
    # Most providers already return unit vectors, but not all; the protocol promises them.
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise EmbeddingError("embedding has zero or non-finite norm")
    return [x / norm for x in vector]


def _error_message(response: httpx.Response) -> str:
    """The `error.message` of OpenAI's error shape, else the start of the body."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except ValueError:
        pass
    return response.text[:500] or response.reason_phrase
