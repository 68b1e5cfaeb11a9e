"""Embedding model providers: texts in, unit-length vectors out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray


class EmbeddingError(Exception):
    """The provider failed (unreachable, bad answer); the caller may retry."""


class EmbeddingProvider(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in order."""
        ...

    async def embed_query(self, text: str) -> list[float]: ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model sees them (used for chunk sizes and usage)."""
        ...


class InferenceThread:
    """A local model's forward passes, each on the one thread this model owns (they are
    serialised by the model's lock anyway).

    Why one thread: numpy's BLAS keeps working buffers per calling thread and glibc a heap
    arena per thread, neither given back. Spread over asyncio's default pool (up to six
    threads), bulk indexing grew a worker's RSS by about 60 MB per thread for good
    (measured: 477 MB against 228 MB for the same batches on one thread)."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def embed(self, embed_sync: Callable[[list[str]], NDArray[np.float32]],
                    texts: Sequence[str]) -> list[list[float]]:
        """`embed_sync(texts)` on the model's thread, as lists (the event loop stays free)."""
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a sequence of strings, not a string")
        if not texts:
            return []
        vectors: Any = await asyncio.get_running_loop().run_in_executor(
            self._executor, embed_sync, list(texts))
        result: list[list[float]] = vectors.tolist()
        return result
